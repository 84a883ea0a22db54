"""Tables behind the verdicts' honesty: the noise and power at each scale, the streams' spread per
variant (degenerate settings), and the off-recipe stress of the projection (finding X1)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mhc_bench.report import noise
from mhc_bench.report.aggregate import scale_key, sorted_groups
from mhc_bench.report.compare import completed, is_reference, trained
from mhc_bench.report.stats import fmt_num, fmt_spread
from mhc_bench.report.tables import Table, experiments_text, group_cols
from mhc_bench.report.verdicts import collapsed, published_recipe_split


def power_table(frame: pd.DataFrame, effects: dict[str, float]) -> Table:
    """Per scale: the pooled paired-gap SD (seeds + numerical replicates), the seeds, the MDE, and the
    seeds each claim's paper effect would need."""
    title = "Noise and power of the loss verdicts"
    done = completed(frame) if not frame.empty else frame
    out = []
    for scale in sorted({str(s) for s in done.get("scale", pd.Series(dtype=object)).dropna()}, key=scale_key):
        pooled = noise.pooled_noise(done, scale)
        if not pooled.df:
            continue
        at = done[done["scale"] == scale]
        seeds = max((len(noise.paired_gaps(done, g, k)) for k, g in sorted_groups(at)
                     if not is_reference(k.variant)), default=0)
        row: dict[str, Any] = {"scale": scale, "pooled gap SD": f"{pooled.sd:.4f}", "gaps": pooled.gaps,
                               "numerical replicates": pooled.replicates, "seeds (largest group)": seeds,
                               "MDE at those seeds": fmt_num(noise.mde(pooled.sd, seeds), 4)}
        for claim, effect in effects.items():
            need = noise.seeds_needed(pooled.sd, effect)
            row[f"seeds for {claim} ({effect:+.3f})"] = "—" if need is None else need
        out.append(row)
    notes = ["Pooled SD: every non-baseline group's paired loss gaps (seed-matched, numerical replicates "
             "included) around their group mean, pooled at the scale. MDE: 80 % power, two-sided 5 %, "
             "(t(0.975, S-1) + t(0.8, S-1)) x SD / sqrt(S). A verdict whose interval includes 0 while the "
             "MDE exceeds the paper's effect is 'underpowered' (mhc_bench/report/noise.py)."]
    return Table(title, pd.DataFrame(out), notes)


def stream_spread_table(frame: pd.DataFrame, threshold: float) -> Table:
    """Per n-stream group: the final layer's stream spread over seeds, the largest per-layer spread,
    and whether the streams collapsed (below ``threshold``)."""
    title = "Stream spread per variant (degenerate settings)"
    rows = trained(frame) if not frame.empty else frame
    out = []
    for key, group in sorted_groups(rows):
        if is_reference(key.variant) or pd.isna(key.n) or int(key.n) < 2:
            continue
        gone, median = collapsed(group, threshold)
        out.append({**group_cols(key), "experiments": experiments_text(group),
                    "final spread (median [min, max])": fmt_spread(group.get("final_stream_spread", []), 4),
                    "max spread over layers": fmt_spread(group.get("max_stream_spread", []), 3),
                    "collapsed": "yes: degenerate" if gone else ("?" if pd.isna(median) else "no")})
    notes = ["Stream spread after a layer: ||x - mean_i x_i|| / ||x|| over the n streams, per token, "
             "averaged (0: the streams are copies of one vector). 'collapsed': the final layer's spread, "
             f"median over seeds, below {threshold:g} = 2^-7, the relative resolution of bf16: such streams "
             "reach the merge as one vector, and a claim about n streams is reported 'degenerate' there."]
    return Table(title, pd.DataFrame(out), notes)


def stress_table(frame: pd.DataFrame, variant: str, high: float, ceiling: float) -> Table:
    """Finding X1 per cell: the off-recipe cells' gains and the projection's convergence."""
    title = f"Off-recipe stress of the projection ({variant}, finding X1)"
    rows = trained(frame[frame["variant"] == variant]) if not frame.empty else frame
    _, stress, recipe_lr, _ = (published_recipe_split(rows, frame) if not rows.empty
                               else (rows, rows, None, rows))
    out = []
    for _, r in stress.sort_values(["lr", "seed"]).iterrows():
        need = r.get("max_sinkhorn_iters_needed")
        out.append({
            "cell": r["cell_id"], "lr": f"{r['lr']:g}", "clip": f"{r.get('grad_clip', 0):g}",
            "seed": int(r["seed"]), "rerun": int(r.get("rerun", 0) or 0),
            "max single bwd": fmt_num(r.get("max_single_bwd")),
            "max composite": fmt_num(max(r.get("max_composite_fwd", 0), r.get("max_composite_bwd", 0))),
            "bound holds": "no" if (r.get("max_single_bwd", 0) > high or max(
                r.get("max_composite_fwd", 0), r.get("max_composite_bwd", 0)) > ceiling) else "yes",
            "logit span": fmt_num(r.get("max_logit_span"), 1),
            "column error": fmt_num(r.get("max_col_err"), 4),
            "iterations to converge": "—" if pd.isna(need) else (">5000" if need > 5000 else f"{need:.0f}"),
        })
    recipe = "" if recipe_lr is None else f" (the recipe: clipping on, lr <= {recipe_lr:g})"
    notes = [f"Cells trained off the recipe{recipe}. Logit span: the largest per-layer median over tokens of "
             "max - min of H_res's logits; column error: max over layers of the token mean of "
             "max_j |column sum - 1| after the configured iterations; iterations to converge: the Sinkhorn "
             "iterations (float64, log domain) that bring the column error below 1e-3 for the median token "
             "of the worst layer (mhc_bench/probes.py)."]
    return Table(title, pd.DataFrame(out), notes)
