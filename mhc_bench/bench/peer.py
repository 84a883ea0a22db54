"""Peer comparison: one mHC residual layer, ours vs lucidrains' ``hyper-connections`` mHC.

Both wrap the same branch (pre-norm MLP) at the same shapes; we time forward
+ backward of the layer and count its activation memory. The peer runs its
default settings (``ManifoldConstrainedHyperConnections``: per-stream RMSNorm,
exp-domain Sinkhorn, 20 iterations, streams folded into the batch dim), so
it is a like-for-like *workload*, not an identical parameterisation.

The branch alone (same input size, forward + backward) is timed in the same
interleaved group: ``overhead_ms`` is a layer's time minus the branch's, the
cost of the hyper-connection machinery itself (the shared branch bounds the
whole-layer ratio: at C = 512 the MLP alone is over half of the peer's time).
"""

from __future__ import annotations

import dataclasses

import torch

from mhc_bench.bench.measure import SavedBytes, interleaved_medians, median
from mhc_bench.model import MLP, ModelConfig, PreNorm, ResidualLayer


def peer_available() -> str | None:
    """The peer package's version, or None when it is not installed."""
    try:
        import importlib.metadata as md

        import hyper_connections  # noqa: F401
    except ImportError:
        return None
    return md.version("hyper-connections")


def _activation_mb(fn, params) -> float:
    counter = SavedBytes(exclude=params)
    with counter:
        out = fn()
    del out
    return counter.total / 2**20


def peer_rows(
    paths: list[str], ns: list[int], widths: list[int], batch: int, seq_len: int, device: torch.device,
    repeats: int, warmup: int,
) -> list[dict]:
    from hyper_connections import ManifoldConstrainedHyperConnections as PeerMHC

    rows = []
    for C in widths:
        for n in [m for m in ns if m > 1]:  # the peer swaps in a plain residual at n = 1
            torch.manual_seed(0)
            cfg = ModelConfig(d_model=C, n_head=4, n_streams=n, mixing="mhc", seq_len=seq_len)
            branch = PreNorm(cfg, MLP(cfg)).to(device)
            ours = {p: ResidualLayer(dataclasses.replace(cfg, kernels=p), 0, branch).to(device)
                    for p in paths}
            peer = PeerMHC(n, dim=C, branch=branch, layer_index=0).to(device)
            x = torch.randn(batch, seq_len, n, C, device=device, requires_grad=True)
            x_peer = x.detach().permute(0, 2, 1, 3).reshape(batch * n, seq_len, C).requires_grad_(True)
            forwards = {f"ours/{p}": (lambda m=m, x=x: m(x)) for p, m in ours.items()}
            forwards["peer"] = lambda peer=peer, x_peer=x_peer: peer(x_peer)
            x_branch = torch.randn(batch, seq_len, C, device=device, requires_grad=True)

            def run(f=None) -> None:
                f().sum().backward()

            runners = {k: (lambda f=f: run(f)) for k, f in forwards.items()}
            runners["branch"] = lambda b=branch, xb=x_branch: run(lambda: b(xb))
            times = interleaved_medians(runners, repeats, warmup, device)
            peer_ms, branch_ms = median(times["peer"]), median(times["branch"])
            peer_mb = _activation_mb(forwards["peer"], list(peer.parameters()))
            for key in forwards:
                params = list(peer.parameters()) if key == "peer" else list(ours[key[5:]].parameters())
                mb = peer_mb if key == "peer" else _activation_mb(forwards[key], params)
                ms = median(times[key])
                rows.append({
                    "impl": key, "n": n, "d_model": C, "tokens": batch * seq_len, "fwd_bwd_ms": ms,
                    "activation_mb": mb, "time_ratio_to_peer": ms / peer_ms,
                    "mem_ratio_to_peer": mb / peer_mb if peer_mb else None,
                    "branch_ms": branch_ms, "overhead_ms": ms - branch_ms,
                    "overhead_ratio_to_peer": (ms - branch_ms) / (peer_ms - branch_ms)
                    if peer_ms > branch_ms else None,
                })
    return rows
