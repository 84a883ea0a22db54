# Overhead benchmark: every variant side by side in one process, alone on the machine
# (threads = all cores) so that its timings are not disturbed by training jobs.


rule bench:
    output:
        json=f"{R}/bench/bench.json",
        md=f"{R}/bench/bench.md",
    params:
        args=" ".join(config["bench"]["args"]),
    log:
        f"{R}/logs/bench.log",
    threads: workflow.cores
    resources:
        gpu=RES["gpu"],
    shell:
        "{PY} -m mhc_bench.cli bench --out $(dirname {output.json}) {params.args} > {log} 2>&1"
