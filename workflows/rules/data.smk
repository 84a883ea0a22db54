# Data shared by every cell: corpus + tokenizer, lm-eval task files, the MLflow store.
# Every value a profile controls reaches the shell quoted ({x:q}, shlex): a corpus path with a
# quote or $(...) in it is a path, never shell syntax.


rule prepare_data:
    # One job per data variant of the profile (data + data_variants[<name>]).
    output:
        f"{R}/data/{{data}}.json",
    params:
        data=lambda w: json.dumps({**config["data"], **config["data_variants"][w.data]}, sort_keys=True),
    log:
        f"{R}/logs/prepare_data_{{data}}.log",
    resources:
        runtime=RES["prepare_runtime_min"],
    conda:
        CONDA_ENV
    shell:
        "python -m mhc_bench.workflow.rule_steps prepare-data --data {params.data:q} --out {output:q} > {log:q} 2>&1"


rule prepare_tasks:
    # Also checks, before anything is built, that every external source the profile names exists
    # (eval.source, the hub for lm-eval's own tasks): a missing one fails here, exit 2, one line.
    output:
        f"{R}/tasks.json",
    params:
        max_items=EVAL["max_items"],
        tasks=" ".join(EVAL["tasks"]),
        source=EVAL_SOURCE,
    log:
        f"{R}/logs/prepare_tasks.log",
    resources:
        runtime=RES["prepare_runtime_min"],
    conda:
        CONDA_ENV
    shell:
        # --tasks: the profile's names as one quoted word (split on whitespace by the step);
        # params.source is "--source <path, shell-quoted>" or empty (common.smk).
        "python -m mhc_bench.workflow.rule_steps prepare-tasks --max-items {params.max_items} "
        "--tasks {params.tasks:q} {params.source} --out {output:q} > {log:q} 2>&1"


rule tracking_init:
    # One process creates the SQLite store and the experiment before the cells start:
    # parallel jobs racing on schema creation hit "database is locked".
    output:
        f"{R}/mlflow.ready",
    params:
        uri=G.tracking_uri(config),
        experiment=PROFILE,
    log:
        f"{R}/logs/tracking_init.log",
    conda:
        CONDA_ENV
    shell:
        "python -m mhc_bench.workflow.rule_steps tracking-init --uri {params.uri:q} "
        "--experiment {params.experiment:q} --out {output:q} > {log:q} 2>&1"
