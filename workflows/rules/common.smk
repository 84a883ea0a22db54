# Shared set-up: validate the profile, expand the grid, constrain wildcards.
import json
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the project is importable even when not pip-installed
from mhc_bench.workflow import grid as G


# Two layers, one definition: Snakemake's validate() checks the JSON Schema exported from
# mhc_bench.workflow.profile.Profile, then the Profile model itself fills defaults and checks the
# grid's names; `mhc-bench cells` runs the same model, so both expand a profile identically.
validate(config, "../schemas/profile.schema.json")
try:
    config.update(G.validate_profile(config))
except G.ProfileError as err:
    raise WorkflowError(str(err)) from None

# Steps run with the interpreter that runs Snakemake (the project venv). Deliberately not a
# param: a param change reruns jobs, and moving the venv must not retrain every cell.
PY = sys.executable
PROFILE = config["profile"]
R = str(G.results_root(config))  # results/<profile>
REPORT_DIR = f"{config.get('report_dir', 'report')}/{PROFILE}"
CELLS = G.cell_configs(config)
EVAL = config["eval"]
# `--source bigbench:<path>` when the profile names BIG-bench's task files, else nothing.
EVAL_SOURCE = f"--source {shlex.quote(EVAL['source'])}" if EVAL.get("source") else ""
RES = config["resources"]


wildcard_constraints:
    cell="|".join(re.escape(c) for c in CELLS) or "__no_cells__",
    data="|".join(re.escape(d) for d in config["data_variants"]),


def cell_data(cell):
    """The data variant (a key of the profile's data_variants) a cell trains on."""
    return CELLS[cell]["grid"]["data"]


def cell_dir(cell):
    return f"{R}/cells/{cell}"


def chain_priority(cell):
    """Longest chains first: a cell that is trained and then evaluated starts before the short
    unevaluated ones, which then fill the cores at the end (one long evaluation alone left a
    core idle)."""
    return 1 if G.final_file(config, CELLS[cell]) == "eval.json" else 0


def cell_targets():
    """Every cell's final file: eval.json for evaluated cells, else metrics.json."""
    return [f"{cell_dir(c)}/{G.final_file(config, cell)}" for c, cell in CELLS.items()]
