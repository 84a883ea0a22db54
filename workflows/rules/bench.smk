# Overhead benchmark: every variant side by side in one process, alone on the machine:
# Snakemake caps a rule's threads at --cores, so the default (128) takes every local core
# and no training job runs beside it. On a cluster, set-threads in the executor profile.


rule bench:
    output:
        json=f"{R}/bench/bench.json",
        md=f"{R}/bench/bench.md",
    params:
        args=" ".join(config["bench"]["args"]),
    log:
        f"{R}/logs/bench.log",
    threads: RES["bench_threads"]
    resources:
        runtime=RES["bench_runtime_min"],
        **GPU,
    conda:
        CONDA_ENV
    shell:
        # The profile's arguments travel as one quoted word, split on whitespace by rule_steps.
        "python -m mhc_bench.workflow.rule_steps bench --out \"$(dirname {output.json:q})\" "
        "--args={params.args:q} > {log:q} 2>&1"
