"""A nanoGPT-style decoder whose residual layers take their maps from a registered variant.

The residual state is ``x: [B, T, n, C]`` (n streams of width C). Every
attention and every MLP is its own residual *layer* (two per block, as in the
mHC paper) computing

    x_next = H_res @ x + H_post^T F(H_pre @ x)

with ``H_res: [B, T, n, n]`` (rows = output streams), ``H_pre, H_post: [B, T, n]``.
Which maps, and how they are computed and constrained, is the variant's
(``ModelConfig.mixing``, :mod:`mhc_bench.variants`: ``baseline`` is ``x + F(x)``
with n = 1, ``hc`` Hyper-Connections, ``mhc`` the paper's Eq. 10-12, ``mhc_lite``,
``rowstoch`` and any registered plug-in); nothing here names one.

The embedding is copied into the n streams; ``StreamMerge`` turns them back
into one vector before the final norm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from mhc_bench import dispatch, ops, variants
from mhc_bench.compiled import compiled_forward, use_compiled
from mhc_bench.dispatch import KERNEL_CHOICES

MERGES = ("sum", "mean", "learned")
MERGE_WEIGHT_EPS = 1e-6  # TileKernels' floor under the learned merge weights
MERGE_NORM_EPS = 1e-20  # the learned merge's RMSNorm epsilon without a variant's map_norm_eps


@dataclass
class ModelConfig:
    """Architecture of one model. Validated on construction (``ValueError`` names the field)."""

    vocab_size: int = 4096
    n_layer: int = 6  # transformer blocks; residual layers = 2 * n_layer
    d_model: int = 128
    n_head: int = 4
    seq_len: int = 128
    n_streams: int = 4
    # The residual-mixing variant and its knobs: a registered name, or {kind: <name>, <knob>: value}
    # (mhc_bench.variants). Becomes the variant's Knobs on construction.
    mixing: Any = "mhc"
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
        positive = ("vocab_size", "n_layer", "d_model", "n_head", "seq_len")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.n_streams, int) or self.n_streams < 1:
            raise ValueError(f"n_streams must be an integer >= 1, got {self.n_streams!r}")
        self.mixing = variants.parse_mixing(self.mixing)
        self.spec.check(self.mixing, self.n_streams)
        if self.d_model % self.n_head:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )
        if self.merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {self.merge!r}")
        if self.kernels not in KERNEL_CHOICES:
            raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {self.kernels!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.recompute < -1:
            raise ValueError(f"recompute must be -1 (auto), 0 (off) or a block size, got {self.recompute}")

    @classmethod
    def of(cls, variant: str, **values: Any) -> ModelConfig:
        """``ModelConfig.of("mhc", n_streams=4, sinkhorn_iters=5)``: fields and the variant's knobs
        in one call (each keyword goes where it belongs)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        knobs = {k: values.pop(k) for k in list(values) if k not in fields}
        return cls(mixing={"kind": variant, **knobs}, **values)

    @property
    def variant(self) -> str:
        """The variant's name (``mixing.kind``)."""
        return self.mixing.kind

    @property
    def spec(self) -> variants.Variant:
        """The registered variant (:mod:`mhc_bench.variants`)."""
        return variants.get(self.mixing.kind)

    @property
    def maps(self) -> tuple[str, ...]:
        """The learned maps (empty for a variant without maps)."""
        return tuple(getattr(self.mixing, "maps", ()))

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
        out["mixing"] = self.mixing.model_dump(mode="json")
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


class StreamMerge(nn.Module):
    """The n streams -> one vector before the final norm (``ModelConfig.merge``).

    ``learned`` is DeepSeek TileKernels' merge head: per-token weights
    ``sigmoid(RMSNorm(x_flat) @ phi + b) + eps`` over the streams. ``phi`` and
    ``b`` start at zero, so the weights start equal (the sum's, after the norm).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        # The maps' norm epsilon where the variant has one (the head reads the same flattened stream).
        self.kind, self.eps = cfg.merge, getattr(cfg.mixing, "map_norm_eps", MERGE_NORM_EPS)
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


# probe(layer, x, H_res, x_next): what the stability probes (mhc_bench.probes) see of each layer.
LayerProbe = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], None]


class ResidualLayer(nn.Module):
    """One residual layer: ``x_next = H_res x + H_post^T F(H_pre x)``, maps from the variant."""

    def __init__(self, cfg: ModelConfig, index: int, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.kernels = cfg.kernels
        self.maps: nn.Module | None = cfg.spec.build_maps(cfg, index)
        # Called as probe(self, x, H_res, x_next) by the stability probes (mhc_bench.probes); None in
        # training.
        self.probe: LayerProbe | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.maps is None:
            out = x + self.fn(x[..., 0, :]).unsqueeze(-2)
            if self.probe is not None:
                self.probe(self, x, x.new_ones((*x.shape[:-2], 1, 1)), out)
            return out
        h_pre, h_post, h_res = self.maps(x)
        stream = dispatch.stream_ops(self.kernels, x.device.type)
        y = self.fn(stream.stream_pre(h_pre, x))
        out = stream.stream_post_res(h_res, x, h_post, y)
        if self.probe is not None:
            self.probe(self, x, h_res, out)
        return out


class GPT(nn.Module):
    """The decoder. ``init_seed`` seeds the weights every variant shares (embeddings, attention,
    MLPs, head) from a generator of their own, so that baseline, HC, mHC and any plug-in with the
    same seed start from the same shared weights whatever their maps draw; ``None`` takes the
    global generator's seed (``torch.manual_seed``, which ``L.seed_everything`` sets)."""

    def __init__(self, cfg: ModelConfig, init_seed: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dispatch.require_usable(cfg.kernels)
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        layers = []
        for i in range(cfg.n_residual_layers):
            inner = CausalSelfAttention(cfg) if i % 2 == 0 else MLP(cfg)
            layers.append(ResidualLayer(cfg, i, PreNorm(cfg, inner)))
        self.layers = nn.ModuleList(layers)
        self.merge = StreamMerge(cfg)
        self.ln_f = RMSNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self._init_shared_weights(torch.initial_seed() if init_seed is None else init_seed)

    def _init_shared_weights(self, seed: int) -> None:
        """nanoGPT's initialisation of every module outside the maps, drawn in module order from one
        generator: the maps (``layers.<i>.maps``, which each variant initialises itself while it is
        built) and the learned merge head draw nothing from it."""
        gen = torch.Generator().manual_seed(seed)
        for name, module in self.named_modules():
            if ".maps" in f".{name}" or name.startswith("merge"):
                continue
            if isinstance(module, nn.Linear):
                std = 0.02
                if getattr(module, "is_residual_out", False):
                    std = 0.02 / math.sqrt(self.cfg.n_residual_layers)
                nn.init.normal_(module.weight, mean=0.0, std=std, generator=gen)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02, generator=gen)

    def map_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the residual maps (H_pre, H_post, H_res), for grad-norm probes."""
        for layer in self.layers:
            if layer.maps is not None:
                yield from layer.maps.parameters()

    @contextlib.contextmanager
    def probing(self, probe: LayerProbe) -> Iterator[None]:
        """Call ``probe(layer, x, H_res, x_next)`` for every residual layer of the forward passes run
        inside."""
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

    def kernel_paths(self, device_type: str) -> str:
        """Which implementations run this model's maps and stream ops on ``device_type``."""
        spec = self.cfg.spec
        return dispatch.describe(self.cfg.kernels, device_type, spec.implementations,
                                 self.layers[0].maps is not None)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _run_chunk(chunk: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for layer in chunk:
        x = layer(x)
    return x
