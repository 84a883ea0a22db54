# Tables, plots and the claims scorecard. `make report` runs this rule with
# report_only=True: it then reads whatever results exist and trains nothing.


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
        # a profile that evaluates nothing has no missing eval.json
        no_eval="" if config["eval"]["enabled"] else "--no-eval",
    log:
        f"{R}/logs/report.log",
    conda:
        CONDA_ENV
    shell:
        "python -m mhc_bench.cli report --results \"$(dirname {output.summary:q})\" "
        "--out \"$(dirname {output.md:q})\" --profile {params.profile:q} {params.no_eval} > {log:q} 2>&1"
