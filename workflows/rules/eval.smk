# lm-evaluation-harness on the BBH-, GSM8K- and MMLU-style tasks, one job per cell.


rule evaluate:
    input:
        # ancient(): evaluated once its cell has trained (missing metrics.json), never because of
        # file times; after a forced retrain (-R train), force the evaluation too (-R evaluate).
        metrics=ancient(f"{R}/cells/{{cell}}/{CF.METRICS}"),
        tasks=ancient(f"{R}/tasks.json"),
    output:
        f"{R}/cells/{{cell}}/{CF.EVAL}",
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
        runtime=RES["eval_runtime_min"],
        **GPU,
    conda:
        CONDA_ENV
    shell:
        # --tasks takes the names as one quoted word (whitespace-separated): the profile's strings
        # never reach the shell unquoted, and the params (hence the rerun policy) stay as they were;
        # params.source is "--source <path, shell-quoted>" or empty (common.smk).
        "OMP_NUM_THREADS={threads} python -m mhc_bench.cli eval --cell \"$(dirname {output:q})\" "
        "--tasks {params.tasks:q} {params.limit} --batch-size {params.batch_size} "
        "--max-items {params.max_items} {params.source} > {log:q} 2>&1"
