"""A variant from outside the package trains, is probed and appears in a report, with no file of
``mhc_bench`` edited: registered through ``$MHC_BENCH_VARIANTS`` (a module path) or through the
``mhc_bench.variants`` entry-point group (an installed distribution)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

CORPUS = Path(__file__).parent / "fixtures" / "corpus"

TOY = '''
"""A researcher's variant in their own file: H_res = (1 - t) I + t J/n, a doubly stochastic blend."""
import torch
import torch.nn as nn

from mhc_bench.variants import MapKnobs, Variant
from mhc_bench.variants.projected import ProjectedInit, ProjectedMaps


class BlendKnobs(MapKnobs):
    start: float = -2.0  # logit of t at initialisation


class Blend(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.n = n

    def forward(self, logits):
        t = torch.sigmoid(logits)[..., None]  # [..., 1, 1]
        eye = torch.eye(self.n, dtype=logits.dtype, device=logits.device)
        return (1 - t) * eye + t / self.n


class ToyBlend(Variant):
    name = "toy_blend"
    label = "toy blend"
    summary = "H_res between the identity and uniform mixing (a test plug-in)"
    marker = "P"
    knobs = BlendKnobs
    no_decay = ("b_pre", "b_post", "b_res")
    projections = ("phi",)
    implementations = {"torch": "ProjectedMaps", "fast": "ProjectedMaps with the RMSNorm@W kernel"}

    def build_maps(self, cfg, layer_index):
        k, n = cfg.mixing, cfg.n_streams
        init = ProjectedInit(pre=torch.zeros(n), post=torch.zeros(n), res=torch.full((1,), k.start),
                             alpha=k.alpha_init, projection=nn.init.xavier_uniform_)
        return ProjectedMaps(n, cfg.d_model, k.maps, 1, Blend(n), init, k.map_norm_eps, cfg.kernels)
'''


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "plugins"), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mhc_bench.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "toy_blend.py").write_text(textwrap.dedent(TOY))
    return folder


@pytest.mark.slow
def test_a_plugin_module_trains_probes_and_reports(tmp_path: Path, plugin: Path) -> None:
    env = _env(tmp_path, MHC_BENCH_VARIANTS="toy_blend")
    listed = _cli(env, "variants", "toy_blend")
    assert listed.returncode == 0, listed.stderr
    assert "toy_blend: H_res between the identity" in listed.stdout and "start" in listed.stdout

    results = tmp_path / "results" / "toy"
    store = f"sqlite:///{results / 'mlflow.db'}"
    cfg = {"profile": "toy", "model": {"mixing": {"kind": "toy_blend", "start": -1.0}, "n_streams": 3,
                                        "d_model": 16, "n_layer": 1, "n_head": 2, "seq_len": 16},
           "data": {"corpus": str(CORPUS), "tokenizer": "char"},
           "train": {"steps": 12, "batch_size": 4, "warmup_steps": 2, "probe_every": 4, "val_every": 6,
                     "val_batches": 1, "ckpt_every": 6, "num_threads": 1},
           "tracking": {"tracking_uri": store, "experiment": "toy"}}
    (tmp_path / "cell.yaml").write_text(yaml.safe_dump(cfg))
    cell = results / "cells" / "toy"
    trained = _cli(env, "train", "--config", str(tmp_path / "cell.yaml"), "--out", str(cell))
    assert trained.returncode == 0, trained.stderr[-2000:]
    metrics = yaml.safe_load((cell / "metrics.json").read_text())
    assert metrics["variant"] == "toy_blend" and metrics["status"] == "completed"
    assert metrics["max_single_bwd"] == pytest.approx(1.0, abs=1e-5)  # I and J/n blend doubly stochastic

    probed = _cli(env, "probe", "--cell", str(cell))
    assert probed.returncode == 0, probed.stderr[-2000:]

    report = tmp_path / "report"
    built = _cli(env, "report", "--results", str(results), "--out", str(report), "--profile", "toy")
    assert built.returncode == 0, built.stderr[-2000:]
    text = (report / "report.md").read_text()
    assert "toy_blend" in text

    unregistered = _cli(_env(tmp_path), "train", "--config", str(tmp_path / "cell.yaml"), "--out",
                        str(tmp_path / "other"))
    assert unregistered.returncode == 2 and "toy_blend" in unregistered.stderr  # one line, no traceback


def test_a_plugin_registers_through_the_entry_point_group(tmp_path: Path, plugin: Path) -> None:
    dist = plugin / "toy_blend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-blend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mhc_bench.variants]\ntoy_blend = toy_blend:ToyBlend\n")
    listed = _cli(_env(tmp_path), "variants")
    assert listed.returncode == 0, listed.stderr
    assert "toy_blend: H_res between the identity" in listed.stdout
    assert "mhc_lite" in listed.stdout  # the built-ins are still there
