"""lm-eval model adapter for mhc-bench ``GPT`` checkpoints.

Scoring is exact rather than approximate: sequences are right-padded, which a
causal model never attends to, so a batched log-likelihood equals the
model's own cross-entropy on the same tokens. Inputs longer than the context
are left-truncated to ``seq_len`` tokens; generation is greedy with a sliding
window of the last ``seq_len`` tokens (the model has no KV cache).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

from mhc_bench import cellfolder as cf
from mhc_bench.evaluation.runner import DEFAULT_BATCH_SIZE
from mhc_bench.model import GPT
from mhc_bench.trained import load_trained_model

DEFAULT_MAX_GEN_TOKS = 256
AUTO_MAX_BATCH = 64  # batch_size=auto tries this first, halving on out-of-memory


@register_model("mhc-bench")
class MhcLM(TemplateLM):
    """A trained cell (``from_cell``) or an in-memory ``(model, tokenizer)`` pair, for lm-eval."""

    def __init__(
        self,
        model: GPT | None = None,
        tokenizer: Any = None,
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        max_gen_toks: int = DEFAULT_MAX_GEN_TOKS,
        device: str | None = None,
        cell: str | None = None,
        max_batch_size: int | str | None = None,
    ) -> None:
        super().__init__()
        if cell is not None:
            from mhc_bench.data.tokenizer import load_tokenizer

            model, _ = load_trained_model(Path(cell))
            tokenizer = load_tokenizer(Path(cell) / cf.TOKENIZER)
        if model is None or tokenizer is None:
            raise ValueError("MhcLM needs either cell=<dir> or both model and tokenizer")
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self._device).eval()
        self.tokenizer = tokenizer
        self.max_length = model.cfg.seq_len
        eot = getattr(tokenizer, "eot_id", None)
        # Without an end-of-text token, a newline is the closest document boundary.
        self._eot = int(eot) if eot is not None else tokenizer.encode("\n")[-1]
        self.batch_size = self._batch_size(batch_size, max_batch_size)
        self.max_gen_toks = int(max_gen_toks)

    @classmethod
    def from_cell(cls, cell_dir: str | Path, **kwargs: Any) -> MhcLM:
        return cls(cell=str(cell_dir), **kwargs)

    def _batch_size(self, requested: int | str | None, max_batch_size: int | str | None) -> int:
        """A fixed batch size, or lm-eval's ``auto`` / ``auto:N``: the largest power of two up to
        ``max_batch_size`` (default AUTO_MAX_BATCH) whose full-context forward fits in memory. The
        choice is kept in ``batch_sizes`` (lm-eval prints it next to ``auto``)."""
        text = str(DEFAULT_BATCH_SIZE if requested is None else requested).strip().lower()
        if not text.startswith("auto"):
            return int(text)
        size = int(max_batch_size) if max_batch_size not in (None, "") else AUTO_MAX_BATCH
        size = 1 << max(0, size.bit_length() - 1)
        while size > 1:
            try:
                self._forward_padded([[self.eot_token_id] * self.max_length] * size)
                break
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if not isinstance(err, torch.OutOfMemoryError) and "memory" not in str(err).lower():
                    raise
                size //= 2
            finally:
                if self._device.type == "cuda":
                    torch.cuda.empty_cache()
        self.batch_sizes = {0: size}
        return size

    # ------------------------------------------------------------------ tokens
    @property
    def eot_token_id(self) -> int:
        return self._eot

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return type(self.tokenizer).__name__

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        return list(self.tokenizer.encode(string))

    def tok_decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(list(tokens))

    # ------------------------------------------------------------------ scoring
    def _padded(self, rows: list[list[int]]) -> torch.Tensor:
        """Right-padded token ids ``[B, T]`` on the model's device."""
        width = max(len(r) for r in rows)
        batch = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            batch[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return batch.to(self._device)

    @torch.inference_mode()
    def _forward_padded(self, rows: list[list[int]]) -> torch.Tensor:
        """Log-probabilities ``[B, T, V]`` (float32) of right-padded rows."""
        logits, _ = self.model(self._padded(rows))
        return F.log_softmax(logits.float(), dim=-1)

    @torch.inference_mode()
    def _next_tokens(self, rows: list[list[int]]) -> list[int]:
        """Greedy next token of each right-padded row: the LM head runs on each row's last
        position only (the argmax of the logits is the argmax of the log-probabilities)."""
        hidden = self.model.features(self._padded(rows))
        last = torch.tensor([len(r) - 1 for r in rows], device=hidden.device)
        logits = self.model.lm_head(hidden[torch.arange(len(rows), device=hidden.device), last])
        return logits.float().argmax(-1).tolist()

    def _loglikelihood_tokens(
        self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False, **kwargs: Any
    ) -> list[tuple[float, bool]]:
        """Sum of log p(continuation | context), and whether greedy decoding reproduces it."""
        L = self.max_length
        prepared = []
        for _, ctx, cont in requests:
            whole = (ctx + cont)[-(L + 1):]
            inp = whole[:-1]
            n = min(len(cont), len(inp))
            prepared.append((inp, whole[len(whole) - n:], n))
        order = sorted(range(len(prepared)), key=lambda i: (-len(prepared[i][0]), i))
        results: list[tuple[float, bool]] = [(0.0, False)] * len(prepared)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            logp = self._forward_padded([prepared[i][0] for i in idx])
            for row, i in enumerate(idx):
                inp, target, n = prepared[i]
                positions = slice(len(inp) - n, len(inp))
                lp = logp[row, positions]
                tgt = torch.tensor(target, dtype=torch.long, device=lp.device)
                total = lp.gather(-1, tgt[:, None]).double().sum().item()
                greedy = bool((lp.argmax(-1) == tgt).all().item())
                results[i] = (total, greedy)
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Full-text log-likelihood over disjoint windows of the model's context."""
        out = []
        for req in requests:
            tokens = self.tok_encode(req.args[0])
            rolling = get_rolling_token_windows(
                token_list=tokens, prefix_token=self.prefix_token_id, max_seq_len=self.max_length,
                context_len=1,
            )
            windows = [make_disjoint_window(w) for w in rolling]
            scores = self._loglikelihood_tokens([(None, ctx, cont) for ctx, cont in windows])
            out.append(sum(s for s, _ in scores))
        return out

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy continuations, each cut before its first ``until`` string, at most ``max_gen_toks`` long."""
        jobs = []
        for req in requests:
            context, kwargs = req.args
            kwargs = dict(kwargs or {})
            until = kwargs.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            limit = int(kwargs.get("max_gen_toks", self.max_gen_toks))
            jobs.append((self.tok_encode(context) or [self.prefix_token_id], until, limit))
        order = sorted(range(len(jobs)), key=lambda i: (-len(jobs[i][0]), i))
        results = [""] * len(jobs)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            for i, text in zip(idx, self._greedy([jobs[i] for i in idx]), strict=True):
                results[i] = text
        return results

    def _greedy(self, jobs: list[tuple[list[int], list[str], int]]) -> list[str]:
        L = self.max_length
        seqs = [list(ctx) for ctx, _, _ in jobs]
        generated: list[list[int]] = [[] for _ in jobs]
        texts = [""] * len(jobs)
        active = [limit > 0 for _, _, limit in jobs]
        while any(active):
            rows = [i for i, a in enumerate(active) if a]
            windows = [seqs[i][-L:] for i in rows]
            for i, token in zip(rows, self._next_tokens(windows), strict=True):
                _, until, limit = jobs[i]
                if token == self._eot:
                    active[i] = False
                    continue
                seqs[i].append(token)
                generated[i].append(token)
                texts[i] = self.tok_decode(generated[i])
                if any(stop in texts[i] for stop in until) or len(generated[i]) >= limit:
                    active[i] = False
        out = []
        for text, (_, until, _) in zip(texts, jobs, strict=True):
            cut = min((text.find(s) for s in until if s in text), default=len(text))
            out.append(text[:cut])
        return out
