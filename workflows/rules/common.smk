# Shared set-up: validate the profile, expand the grid, constrain wildcards; the functions the
# rule files use (rule files hold rules only).
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # the project is importable even when not pip-installed
from mhc_bench import cellfolder as CF
from mhc_bench.workflow import grid as G


# Two layers, one definition: Snakemake's validate() checks the JSON Schema generated from
# mhc_bench.workflow.profile.Profile and the variant registry (plug-ins included; the committed
# ../schemas/profile.schema.json is the same for the built-in variants), then the Profile model
# itself fills defaults and checks the grid's names; `mhc-bench cells` runs the same model, so
# both expand a profile identically.
validate(config, G.write_schema(Path(".snakemake") / "mhc-bench" / "profile.schema.json"))
try:
    config.update(G.validate_profile(config))
except G.ProfileError as err:
    raise WorkflowError(str(err)) from None

# Steps run `python -m mhc_bench...`, and the interpreter that runs Snakemake (the project venv,
# the default way to run) comes first on PATH for every job: jobs inherit this environment,
# locally and on a cluster (the SLURM executor exports it). With --sw-deployment-method conda,
# Snakemake activates the rules' environment (workflows/envs/mhc-bench.yaml) on top of it.
# Deliberately neither a param nor a global in the commands: a param change reruns jobs, and
# moving the venv must not retrain every cell.
envvars:
    "PATH",


JOB_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.getenv("PATH", "")])
os.environ["PATH"] = JOB_PATH
CONDA_ENV = "../envs/mhc-bench.yaml"  # relative to workflows/rules/
PROFILE = config["profile"]
R = str(G.results_root(config))  # results/<profile>
REPORT_DIR = f"{config.get('report_dir', 'report')}/{PROFILE}"
CELLS = G.cell_configs(config)
EVAL = config["eval"]
# `--source bigbench:<path>` when the profile names BIG-bench's task files, else nothing.
EVAL_SOURCE = f"--source {shlex.quote(EVAL['source'])}" if EVAL.get("source") else ""
RES = config["resources"]


def gpu_resources():
    """``gpu`` and, when the profile names one, ``gpu_model``: the SLURM executor turns both into
    ``--gpus=<model>:<n>`` (a resource cannot be null, so an unnamed model is left out)."""
    named = {"gpu_model": RES["gpu_model"]} if RES["gpu"] and RES.get("gpu_model") else {}
    return {"gpu": RES["gpu"], **named}


GPU = gpu_resources()
PLACEHOLDER_ACCOUNTS = ("", "CHANGE_ME")


def placeholder_accounts():
    """Where an executor profile still holds a placeholder ``slurm_account`` (default-resources or
    a rule's set-resources): caught here, at parse time, so a dry run fails in one line instead of
    every sbatch call failing later."""
    settings = workflow.resource_settings
    sources = [("default-resources", settings.default_resources or {})]
    sources += [(f"set-resources {rule}", res) for rule, res in (settings.overwrite_resources or {}).items()]
    found = []
    for where, resources in sources:
        if "slurm_account" not in resources:
            continue
        if str(resources["slurm_account"].raw).strip().strip("'\"") in PLACEHOLDER_ACCOUNTS:
            found.append(where)
    return found


if placeholder_accounts():
    raise WorkflowError(
        f"slurm_account is a placeholder ({', '.join(placeholder_accounts())}): set your SLURM account in "
        "workflows/profiles/slurm/config.yaml (default-resources: slurm_account) or pass "
        "--default-resources slurm_account=<account>"
    )


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
    return 1 if G.final_file(config, CELLS[cell]) == CF.EVAL else 0


def cell_targets():
    """Every cell's final file: eval.json for evaluated cells, else metrics.json."""
    return [f"{cell_dir(c)}/{G.final_file(config, cell)}" for c, cell in CELLS.items()]


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
