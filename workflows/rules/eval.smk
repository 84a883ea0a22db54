# lm-evaluation-harness on the BBH-, GSM8K- and MMLU-style tasks, one job per cell.


rule evaluate:
    input:
        metrics=f"{R}/cells/{{cell}}/metrics.json",
        tasks=ancient(f"{R}/tasks.json"),
    output:
        f"{R}/cells/{{cell}}/eval.json",
    params:
        tasks=" ".join(EVAL["tasks"]),
        limit=f"--limit {EVAL['limit']}" if EVAL["limit"] else "",
        batch_size=EVAL["batch_size"],
        max_items=EVAL["max_items"],
        source=EVAL_SOURCE,
    benchmark:
        f"{R}/cells/{{cell}}/eval.benchmark.tsv"
    log:
        f"{R}/logs/eval/{{cell}}.log",
    threads: RES["eval_threads"]
    priority: 1
    resources:
        mem_mb=RES["eval_mem_mb"],
        gpu=RES["gpu"],
    shell:
        "OMP_NUM_THREADS={threads} {PY} -m mhc_bench.cli eval --cell $(dirname {output}) "
        "--tasks {params.tasks} {params.limit} --batch-size {params.batch_size} "
        "--max-items {params.max_items} {params.source} > {log} 2>&1"
