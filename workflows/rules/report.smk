# Tables, plots and the claims scorecard. `make report` runs this rule with
# report_only=True: it then reads whatever results exist and trains nothing.


def report_inputs(wildcards=None):
    """Every cell's final file and the bench, ancient(): the report is rebuilt when one of them is
    made in this run (it did not exist), never because of file times, so the committed report of
    a fresh clone (arbitrary checkout times) is up to date. `make report` forces it."""
    if config.get("report_only"):
        return []
    inputs = cell_targets()
    if config["bench"]["enabled"]:
        inputs.append(f"{R}/bench/bench.json")
    return [ancient(f) for f in inputs]


def report_outputs():
    return [f"{REPORT_DIR}/report.md"]


rule report:
    input:
        report_inputs,
    output:
        md=f"{REPORT_DIR}/report.md",
        html=report(
            f"{REPORT_DIR}/report.html",
            caption="../report/report.rst",
            category="Report",
        ),
        claims=report(
            f"{REPORT_DIR}/claims.csv",
            caption="../report/claims.rst",
            category="Claims scorecard",
        ),
        summary=f"{R}/summary.csv",
        plots=report(
            directory(f"{REPORT_DIR}/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="Plots",
            labels={"figure": "{name}"},
        ),
    params:
        profile=PROFILE,
    log:
        f"{R}/logs/report.log",
    shell:
        "{PY} -m mhc_bench.cli report --results $(dirname {output.summary}) --out $(dirname {output.md}) "
        "--profile {params.profile} > {log} 2>&1"
