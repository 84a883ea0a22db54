"""A nanoGPT-style decoder with three residual variants: baseline, HC and mHC.

The residual state is ``x: [B, T, n, C]`` (n streams of width C). Every
attention and every MLP is its own residual *layer* (two per block, as in the
mHC paper) computing

    x_next = H_res @ x + H_post^T F(H_pre @ x)

with ``H_res: [B, T, n, n]`` (rows = output streams), ``H_pre, H_post: [B, T, n]``.

- ``baseline``: ``x + F(x)`` with n = 1.
- ``hc``: Hyper-Connections (arXiv:2409.19606): static maps plus tanh-gated
  dynamic ones, ``H = S + s * tanh(norm(x) W)``; ``W`` starts at zero and the
  static maps start at H_res = I, H_pre = one-hot(layer index mod n),
  H_post = 1, so the network starts as a plain residual network.
- ``mhc``: mHC Eq. 10-12: RMSNorm of the flattened ``n*C`` vector, one matmul
  with ``[phi_pre | phi_post | phi_res]``, scalar gates ``alpha``, static
  biases (initialised by a preset of :mod:`mhc_bench.map_init`),
  ``sigmoid`` / ``2*sigmoid`` and Sinkhorn-Knopp for H_res.

The embedding is copied into the n streams; ``StreamMerge`` turns them back
into one vector before the final norm. A map left out of ``ModelConfig.maps``
is fixed with no parameters at the values the caption of the paper's Table 1
(an ablation of HC) gives for a disabled map: H_pre = 1/n, H_post = 1,
H_res = I.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mhc_bench import map_init, ops
from mhc_bench.compiled import compiled_forward, use_compiled
from mhc_bench.dispatch import KERNEL_CHOICES, StreamOps, stream_ops_for

VARIANTS = ("baseline", "hc", "mhc")
MERGES = ("sum", "mean", "learned")
MERGE_WEIGHT_EPS = 1e-6  # TileKernels' floor under the learned merge weights


@dataclass
class ModelConfig:
    """Architecture of one model. Validated on construction (``ValueError`` names the field)."""

    vocab_size: int = 4096
    n_layer: int = 6  # transformer blocks; residual layers = 2 * n_layer
    d_model: int = 128
    n_head: int = 4
    seq_len: int = 128
    variant: str = "mhc"  # "baseline" | "hc" | "mhc"
    n_streams: int = 4
    sinkhorn_iters: int = 20
    maps: tuple[str, ...] = ("res", "pre", "post")
    alpha_init: float = 0.01
    # mHC static biases, gates and projection at initialisation: a preset of mhc_bench.map_init
    # (the paper gives none; the references disagree). HC keeps the HC paper's initialisation.
    init: str = "megatron"
    # Epsilon of the RMSNorm over the flattened n*C stream that feeds the maps (mHC Eq. 10 / HC's
    # dynamic maps). The paper's Table 5 value is 1e-20: numerically inert next to the squared
    # activations, so the norm is a pure rescaling.
    map_norm_eps: float = 1e-20
    # How the n streams become one vector before the final norm: "sum" (lucidrains), "mean"
    # (Megatron; equal to sum after the norm), "learned" (DeepSeek TileKernels: sigmoid-gated
    # weights from a projection of the flattened streams, starting equal to the sum's).
    merge: str = "sum"
    dropout: float = 0.0
    bias: bool = False
    kernels: str = "auto"  # "auto" | "torch" | "fast" | "triton" | "compile" (whole model)
    # Selective recompute: checkpoint residual layers in blocks of this many
    # layers (0 = off, -1 = the paper's L_r* = sqrt(nL/(n+2)), rounded).
    recompute: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.maps, str):
            raise ValueError(f"maps must be a list of map names, got the string {self.maps!r}")
        unknown = [m for m in self.maps if m not in ops.MAP_NAMES]
        if unknown:
            raise ValueError(f"maps: unknown map name(s) {unknown}; allowed {ops.MAP_NAMES}")
        self.maps = tuple(m for m in ("res", "pre", "post") if m in self.maps)
        positive = ("vocab_size", "n_layer", "d_model", "n_head", "seq_len")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if not isinstance(self.n_streams, int) or self.n_streams < 1:
            raise ValueError(f"n_streams must be an integer >= 1, got {self.n_streams!r}")
        if self.variant == "baseline" and self.n_streams != 1:
            raise ValueError(f"n_streams must be 1 for variant='baseline', got {self.n_streams}")
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )
        if self.sinkhorn_iters < 1:
            raise ValueError(f"sinkhorn_iters must be >= 1, got {self.sinkhorn_iters}")
        if self.init not in map_init.PRESETS:
            raise ValueError(f"init must be one of {tuple(map_init.PRESETS)}, got {self.init!r}")
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")
        if not self.map_norm_eps > 0:
            raise ValueError(f"map_norm_eps must be > 0, got {self.map_norm_eps}")
        if self.kernels not in KERNEL_CHOICES:
            raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {self.kernels!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.recompute < -1:
            raise ValueError(f"recompute must be -1 (auto), 0 (off) or a block size, got {self.recompute}")

    @property
    def n_residual_layers(self) -> int:
        return 2 * self.n_layer

    def recompute_block(self) -> int:
        """Layers per recompute block; the paper's Eq. 20 optimum when ``recompute == -1``."""
        if self.recompute == -1:
            n, layers = self.n_streams, self.n_residual_layers
            return max(1, round(math.sqrt(n * layers / (n + 2))))
        return self.recompute

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["maps"] = list(self.maps)
        return out


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.is_residual_out = True
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, 4 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.proj.is_residual_out = True
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class PreNorm(nn.Module):
    """F of one residual layer: RMSNorm then attention or MLP (pre-norm inside F)."""

    def __init__(self, cfg: ModelConfig, inner: nn.Module) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.d_model)
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(self.norm(x))


class MHCMaps(nn.Module):
    """mHC's manifold-constrained maps (Eq. 10-12) for one residual layer."""

    def __init__(self, cfg: ModelConfig, layer_index: int, stream_ops: StreamOps) -> None:
        super().__init__()
        n, C = cfg.n_streams, cfg.d_model
        self.n, self.iters, self.eps, self.enabled = n, cfg.sinkhorn_iters, cfg.map_norm_eps, cfg.maps
        self.stream_ops = stream_ops
        preset = map_init.PRESETS[cfg.init]
        widths = {"pre": n, "post": n, "res": n * n}
        width = sum(widths[m] for m in ops.MAP_NAMES if m in self.enabled)
        self.phi = nn.Parameter(torch.empty(n * C, width))
        map_init.init_projection(preset, self.phi)
        alpha = cfg.alpha_init if preset.alpha is None else preset.alpha
        self.alpha = nn.ParameterDict(
            {m: nn.Parameter(torch.tensor(alpha)) for m in ops.MAP_NAMES if m in self.enabled}
        )
        biases = {"pre": map_init.pre_logits(preset, n, layer_index), "post": map_init.post_logits(preset, n),
                  "res": map_init.res_logits(preset, n)}
        self.b_pre, self.b_post, self.b_res = (
            nn.Parameter(biases[m]) if m in self.enabled else None for m in ("pre", "post", "res")
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x_flat = x.flatten(-2)
        if len(self.enabled) == 3:
            alpha = torch.stack([self.alpha["pre"], self.alpha["post"], self.alpha["res"]])
            return self.stream_ops.mhc_maps(
                x_flat, self.phi, alpha, self.b_pre, self.b_post, self.b_res, self.iters, self.eps
            )
        return self.stream_ops.mhc_maps_partial(
            x_flat, self.phi, dict(self.alpha), self.b_pre, self.b_post, self.b_res, self.n, self.iters,
            self.eps,
        )


class HCMaps(nn.Module):
    """Hyper-Connections' unconstrained dynamic maps (arXiv:2409.19606) for one layer."""

    def __init__(self, cfg: ModelConfig, layer_index: int, stream_ops: StreamOps | None = None) -> None:
        super().__init__()
        n, C = cfg.n_streams, cfg.d_model
        self.n, self.eps, self.enabled = n, cfg.map_norm_eps, cfg.maps
        self.stream_ops = stream_ops
        widths = {"pre": 1, "post": 1, "res": n}
        self.width = {m: widths[m] for m in ops.MAP_NAMES if m in self.enabled}
        # Dynamic projections start at zero: the maps start at their static values.
        self.w = nn.Parameter(torch.zeros(C, sum(self.width.values())))
        self.scale = nn.ParameterDict(
            {m: nn.Parameter(torch.tensor(cfg.alpha_init)) for m in self.width}
        )
        self.s_pre = (
            nn.Parameter(F.one_hot(torch.tensor(layer_index % n), n).float())
            if "pre" in self.enabled else None
        )
        self.s_post = nn.Parameter(torch.ones(n)) if "post" in self.enabled else None
        self.s_res = nn.Parameter(torch.eye(n)) if "res" in self.enabled else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.stream_ops is not None and self.stream_ops.hc_maps is not None:
            return self.stream_ops.hc_maps(
                x, self.w, self.scale, self.s_pre, self.s_post, self.s_res, self.eps
            )
        # The maps are fp32 whatever autocast says (the precision policy in mhc_bench.ops).
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._maps(x.to(ops.compute_dtype(x.dtype)))

    def _maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h_pre, h_post, h_res = ops.static_maps(x.shape[:-2], self.n, x.dtype, x.device)
        dyn = torch.tanh(F.rms_norm(x, (x.shape[-1],), eps=self.eps) @ self.w.to(x.dtype))  # [..., n, width]
        chunks = dict(zip(self.width, dyn.split(list(self.width.values()), dim=-1), strict=True))
        if self.s_pre is not None:
            h_pre = self.s_pre + self.scale["pre"] * chunks["pre"].squeeze(-1)
        if self.s_post is not None:
            h_post = self.s_post + self.scale["post"] * chunks["post"].squeeze(-1)
        if self.s_res is not None:
            # chunks["res"][..., j, i]: input stream j's weight into output stream i.
            h_res = self.s_res + self.scale["res"] * chunks["res"].transpose(-1, -2)
        return h_pre, h_post, h_res


class StreamMerge(nn.Module):
    """The n streams -> one vector before the final norm (``ModelConfig.merge``).

    ``learned`` is DeepSeek TileKernels' merge head: per-token weights
    ``sigmoid(RMSNorm(x_flat) @ phi + b) + eps`` over the streams. ``phi`` and
    ``b`` start at zero, so the weights start equal (the sum's, after the norm).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.kind, self.eps = cfg.merge, cfg.map_norm_eps
        n = cfg.n_streams
        if self.kind == "learned":
            self.phi = nn.Parameter(torch.zeros(n * cfg.d_model, n))
            self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "sum":
            return x.sum(dim=-2)
        if self.kind == "mean":
            return x.mean(dim=-2)
        with torch.autocast(device_type=x.device.type, enabled=False):  # weights are maps: fp32
            flat = x.flatten(-2).to(ops.compute_dtype(x.dtype))
            flat = F.rms_norm(flat, (flat.shape[-1],), eps=self.eps)
            weights = torch.sigmoid(flat @ self.phi.to(flat.dtype) + self.bias) + MERGE_WEIGHT_EPS
        return (weights.unsqueeze(-1) * x).sum(dim=-2).to(x.dtype)


LayerProbe = Callable[[torch.Tensor, torch.Tensor], None]


class ResidualLayer(nn.Module):
    """One residual layer: ``x_next = H_res x + H_post^T F(H_pre x)``."""

    def __init__(self, cfg: ModelConfig, index: int, fn: nn.Module, stream_ops: StreamOps) -> None:
        super().__init__()
        self.fn = fn
        self.stream_ops = stream_ops
        self.maps: nn.Module | None
        if cfg.variant == "mhc":
            self.maps = MHCMaps(cfg, index, stream_ops)
        elif cfg.variant == "hc":
            self.maps = HCMaps(cfg, index, stream_ops)
        else:
            self.maps = None
        # Called as probe(H_res, x_next) by the stability probes (mhc_bench.probes); None in training.
        self.probe: LayerProbe | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.maps is None:
            out = x + self.fn(x[..., 0, :]).unsqueeze(-2)
            if self.probe is not None:
                self.probe(x.new_ones((*x.shape[:-2], 1, 1)), out)
            return out
        h_pre, h_post, h_res = self.maps(x)
        y = self.fn(self.stream_ops.stream_pre(h_pre, x))
        out = self.stream_ops.stream_post_res(h_res, x, h_post, y)
        if self.probe is not None:
            self.probe(h_res, out)
        return out


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stream_ops = stream_ops_for(cfg.kernels)
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        layers = []
        for i in range(cfg.n_residual_layers):
            inner = CausalSelfAttention(cfg) if i % 2 == 0 else MLP(cfg)
            layers.append(ResidualLayer(cfg, i, PreNorm(cfg, inner), self.stream_ops))
        self.layers = nn.ModuleList(layers)
        self.merge = StreamMerge(cfg)
        self.ln_f = RMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "is_residual_out", False):
                std = 0.02 / math.sqrt(self.cfg.n_residual_layers)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def map_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the residual maps (H_pre, H_post, H_res), for grad-norm probes."""
        for layer in self.layers:
            if layer.maps is not None:
                yield from layer.maps.parameters()

    @contextlib.contextmanager
    def probing(self, probe: LayerProbe) -> Iterator[None]:
        """Call ``probe(H_res, x_next)`` for every residual layer of the forward passes run inside."""
        for layer in self.layers:
            layer.probe = probe
        try:
            yield
        finally:
            for layer in self.layers:
                layer.probe = None

    def _run_layers(self, x: torch.Tensor) -> torch.Tensor:
        block = self.cfg.recompute_block()
        if block <= 0 or not (self.training and torch.is_grad_enabled()):
            for layer in self.layers:
                x = layer(x)
            return x
        for start in range(0, len(self.layers), block):
            chunk = self.layers[start : start + block]
            x = checkpoint(_run_chunk, chunk, x, use_reentrant=False)
        return x

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.cfg.kernels == "compile" and use_compiled(self) and self.layers[0].probe is None:
            return compiled_forward(self)(idx, targets)  # traces this method: the eager body below
        logits = self.lm_head(self.features(idx))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-1)
        return logits, loss

    def features(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normed hidden states ``[B, T, C]``: what the LM head reads (greedy decoding
        applies the head to the last position only)."""
        B, T = idx.shape
        if T > self.cfg.seq_len:
            raise ValueError(f"sequence length {T} exceeds seq_len {self.cfg.seq_len}")
        pos = torch.arange(T, device=idx.device)
        h = self.drop(self.wte(idx) + self.wpe(pos))
        x = h.unsqueeze(-2).expand(B, T, self.cfg.n_streams, self.cfg.d_model)
        return self.ln_f(self.merge(self._run_layers(x)))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _run_chunk(chunk: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for layer in chunk:
        x = layer(x)
    return x
