# One training cell per grid row. The trainer resumes from checkpoints/last.ckpt when a
# previous attempt was interrupted, so a rerun neither loses nor duplicates work.

# Writing a YAML file is no cluster job: it runs where Snakemake runs (in a thread there, see
# mhc_bench/workflow/snakerun.py).
localrules:
    cell_config,


rule cell_config:
    output:
        f"{R}/cells/{{cell}}/{CF.CELL_YAML}",
    params:
        cell=lambda w: CELLS[w.cell],
    log:
        f"{R}/logs/cell_config/{{cell}}.log",
    run:
        G.write_cell_yaml(params.cell, Path(output[0]))
        Path(log[0]).write_text(f"wrote {output[0]}\n")


rule train:
    input:
        # ancient(): file times never retrain a finished cell. A cell's config is fixed by its id
        # (the id ends in the config's hash), so a newer cell.yaml (a fresh clone's checkout order)
        # is the same config; re-preparing shared data or the store must not retrain either.
        cfg=ancient(f"{R}/cells/{{cell}}/{CF.CELL_YAML}"),
        data=lambda w: ancient(f"{R}/data/{cell_data(w.cell)}.json"),
        tracking=ancient(f"{R}/mlflow.ready"),
    output:
        f"{R}/cells/{{cell}}/{CF.METRICS}",
    benchmark:
        f"{R}/cells/{{cell}}/train.benchmark.tsv"
    log:
        f"{R}/logs/train/{{cell}}.log",
    threads: RES["train_threads"]
    priority: lambda w: chain_priority(w.cell)
    resources:
        mem_mb=RES["train_mem_mb"],
        runtime=RES["train_runtime_min"],
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "OMP_NUM_THREADS={threads} python -m mhc_bench.cli train --config {input.cfg:q} "
        "--out \"$(dirname {output:q})\" > {log:q} 2>&1"
