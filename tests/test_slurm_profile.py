"""The SLURM profile a cluster user can trust: per-rule resources from the workflow profile reach
the jobs (dry runs with the real executor plugin), a placeholder account is refused at once, and
`snakemake --lint` is clean with a conda environment declared for the rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mhc_bench.paths import PROJECT_ROOT
from mhc_bench.workflow.grid import load_profile, profile_cells

SLURM = PROJECT_ROOT / "workflows" / "profiles" / "slurm" / "config.yaml"
CONFIGS = PROJECT_ROOT / "workflows" / "config"


def _snakemake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", *args], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=600)


def _filled_profile(tmp_path: Path) -> Path:
    """The committed SLURM profile with an account filled in, as its users would."""
    folder = tmp_path / "slurm"
    folder.mkdir()
    (folder / "config.yaml").write_text(SLURM.read_text().replace("CHANGE_ME", "my_account"))
    return folder


def _jobs(stdout: str) -> dict[str, list[dict[str, str]]]:
    """Per rule, each job's resources and shell command as a dry run prints them."""
    out: dict[str, list[dict[str, str]]] = {}
    for block in re.split(r"\n(?=rule \w+:)", stdout):
        head = re.match(r"rule (\w+):", block)
        res = re.search(r"^\s+resources: (.+)$", block, re.M)
        if not head or not res:
            continue
        job = dict(kv.split("=", 1) for kv in res.group(1).split(", "))
        shell = re.search(r"^(?:Shell command: )?\s*(OMP_NUM_THREADS=\S+ python .+)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        job["shell"] = shell.group(1) if shell else ""
        job["threads"] = threads.group(1) if threads else "1"
        out.setdefault(head.group(1), []).append(job)
    return out


@pytest.mark.parametrize("profile", ["gpu-paper-shape", "gpu-small"])
def test_rule_resources_reach_the_slurm_jobs(profile: str, tmp_path: Path) -> None:
    # --cores only lifts the dry run's own cap of 1 thread: a real SLURM run has none.
    done = _snakemake("-n", "--profile", str(_filled_profile(tmp_path)), "--configfile",
                      str(CONFIGS / f"{profile}.yaml"), "--cores", "128")
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = _jobs(done.stdout)
    res = load_profile(profile)["resources"]
    assert len(jobs["train"]) == len(profile_cells(profile))
    for rule, prefix in (("train", "train"), ("evaluate", "eval")):
        for job in jobs[rule]:
            assert job["runtime"] == str(res[f"{prefix}_runtime_min"]), (rule, job)
            assert job["mem_mb"] == str(res[f"{prefix}_mem_mb"]) and job["gpu"] == str(res["gpu"])
            assert job.get("gpu_model") == res["gpu_model"] or res["gpu_model"] is None
            assert job["slurm_partition"] == "gpu" and job["slurm_account"] == "my_account"
            # No cpus_per_task: the executor asks for --cpus-per-task=<threads>, the threads it runs.
            threads = res[f"{prefix}_threads"]
            assert "cpus_per_task" not in job and job["threads"] == str(threads)
            assert job["shell"].startswith(f"OMP_NUM_THREADS={threads} python -m mhc_bench")
    for job in jobs["bench"]:
        assert job["runtime"] == str(res["bench_runtime_min"])
    assert jobs["report"][0]["runtime"] == "30"  # the cluster profile's default for small rules
    if profile == "gpu-paper-shape":
        assert {j["gpu_model"] for j in jobs["train"]} == {"a100"}
        assert {j["runtime"] for j in jobs["train"]} == {"1440"}
        assert {j["runtime"] for j in jobs["evaluate"]} == {"120"}


def test_a_placeholder_account_is_refused_at_dry_run() -> None:
    done = _snakemake("-n", "--profile", str(SLURM.parent), "--configfile", str(CONFIGS / "gpu-small.yaml"))
    assert done.returncode != 0
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "slurm_account is a placeholder" in ln]
    assert len(lines) == 1 and "workflows/profiles/slurm/config.yaml" in lines[0]
    assert "Job stats" not in done.stdout  # refused before any job was planned


def test_the_slurm_profile_leaves_job_sizes_to_the_workflow_profile() -> None:
    slurm = yaml.safe_load(SLURM.read_text())
    for rule, settings in slurm["set-resources"].items():
        assert set(settings) <= {"slurm_partition", "slurm_account", "constraint", "qos"}, rule
    assert "cpus_per_task" not in slurm["default-resources"]


@pytest.mark.parametrize("profile", ["quick", "gpu-paper-shape"])
def test_lint_is_clean(profile: str) -> None:
    done = _snakemake("--lint", "--configfile", str(CONFIGS / f"{profile}.yaml"))
    assert done.returncode == 0 and "Lints for" not in done.stdout + done.stderr, done.stdout[-3000:]


def test_every_shell_rule_declares_the_conda_environment() -> None:
    rules = (PROJECT_ROOT / "workflows" / "rules").glob("*.smk")
    shells = conda = 0
    for path in rules:
        text = path.read_text()
        shells += text.count("    shell:")
        conda += text.count("    conda:\n        CONDA_ENV")
        assert "{PY}" not in text  # no global interpreter in the commands
    assert shells == conda == 7
    env = yaml.safe_load((PROJECT_ROOT / "workflows" / "envs" / "mhc-bench.yaml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    # Snakemake creates the environment from a copy in <workdir>/.snakemake/conda/: from there,
    # "../.." is the project root, whose pyproject.toml holds the pinned dependencies.
    assert pip == ["-e ../.."]
    assert (PROJECT_ROOT / ".snakemake" / "conda" / ".." / ".." / "pyproject.toml").resolve().is_file()
