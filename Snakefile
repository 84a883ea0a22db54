# mhc-bench: train baseline / HC / mHC cells over a declared grid, evaluate them with
# lm-eval, benchmark the overhead, and compile the report with the claims scorecard.
#
#   snakemake --cores all --configfile workflows/config/quick.yaml        # full reproduction
#   snakemake results/<profile>/cells/<cell_id>/eval.json ...             # one cell
#   snakemake report --config report_only=True ...                        # tables only, no training
#
# Rule files are split by stage under workflows/rules/ (the Snakemake workflow catalog layout).
from snakemake.utils import min_version

min_version("9.0")


configfile: "workflows/config/quick.yaml"


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
