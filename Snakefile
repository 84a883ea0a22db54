# mhc-bench: train baseline / HC / mHC cells over a declared grid, evaluate them with
# lm-eval, benchmark the overhead, and compile the report with the claims scorecard.
#
#   snakemake --cores all --configfile workflows/config/quick.yaml        # full reproduction
#   snakemake results/<profile>/cells/<cell_id>/eval.json ...             # one cell
#   snakemake report --config report_only=True ...                        # tables only, no training
#
# Rule files are split by stage under workflows/rules/ (the Snakemake workflow catalog layout).
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

# No default configfile: Snakemake would deep-merge it under any --configfile, so a profile
# that leaves out a key would silently take quick's value (and differ from `mhc-bench cells`).
if not config:
    raise WorkflowError(
        "no profile given: run `make reproduce PROFILE=<name>` or pass "
        "--configfile workflows/config/<name>.yaml (profiles: smoke, quick, cpu-full, gpu-small, "
        "gpu-paper-shape)"
    )


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/eval.smk"
include: "workflows/rules/bench.smk"
include: "workflows/rules/report.smk"


rule all:
    default_target: True
    input:
        cell_targets(),
        report_outputs(),
