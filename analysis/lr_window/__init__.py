"""Report for the lr_window study (issue 14): which learning rates train, per depth, init, BatchNorm and optimizer.

The page answers first: findings (how many cells train, He's window against N(0,1)'s and Xavier's, the trend
with depth, what changes at the upper edge), then the map, then the window table; the details follow (how a
trial is judged, the caveats, the statements per cell, the tests, the edges, and the long tables folded).
The definitions of *trains*, *cell* and *window* are in compute.py's docstring.

- compute.py: the numbers (judging, windows, comparisons, edges, data caveats);
- text.py: the words (findings, definitions, readable tables, statements);
- figures.py: the map and the edge figure;
- this module: what goes where on the page.

Writes:
- `lr_window` (the main table, one row per cell), `lr_window_long` (the same, numbers only) and
  `lr_window_points` (one row per cell and lr: mean ± 95% CI over seeds, outcomes, trains or not);
- `lr_window_map.png`: one panel per (init, bn, optimizer), lr against depth, colour = final accuracy, the
  window as a green band per depth row, early-stopped trials as triangles labelled with the epochs they ran,
  diverged trials as red crosses;
- `lr_window_claim` (He's window against N(0,1)'s and Xavier's per depth, bn and optimizer, with statements),
  `lr_window_depth` (does each init's window narrow with depth), and with seeds `lr_window_paired` (per-seed
  widths compared by a paired t test);
- `lr_window_edges` / `lr_window_edge_summary` / `lr_window_edges.png`: per layer, update_ratio and
  dead_fraction just inside the window's upper edge against just above it (skipped, with a sentence, for sweeps
  whose layers table predates those columns);
- caveats computed from the data: 1x1 maps at depth 20, the data set, epochs, ASHA's rungs, lr spacing.
"""
from __future__ import annotations

import pandas as pd

from analysis.document import Report, ReportError
from analysis.lr_window import compute, figures, text
from analysis.lr_window.compute import LAYER_STATS, NORMAL, XAVIER

ALL = 10 ** 9  # min_n for tables without seed cells: no "fewer than 3 seeds" warning


def build(report: Report, tables: dict) -> None:
    trials, epochs, layers = tables["trials"], tables.get("epochs"), tables.get("layers")
    if "lr" not in trials:
        raise ReportError("lr_window: the trials table has no lr column")
    s = compute.judge_settings(report.source or str(report.outdir.parent), trials)
    t = compute.judged(trials, epochs, s)
    if not len(t):
        raise ReportError("lr_window: no completed, early-stopped or diverged trial to judge yet")
    keys = compute.cell_keys(t)
    points = compute.lr_points(t, keys, s)
    windows = compute.window_table(points, keys)
    seeds = bool(points["n"].max() > 1 and t["seed"].nunique() > 1)
    min_n = int(points["n"].min())

    if "lr" in t and t["lr"].nunique() > 1:
        report.figure("lr_window_map", figures.map_figure(t, windows, keys, s), "Which lrs train",
                      f"One panel per init, BN and optimizer; x = lr, y = depth, colour = final {s['metric']} "
                      f"(0 to 100%); green band = the window (trains = {text.threshold_text(s)}).", main=True)
    report.table("lr_window", text.readable(windows, keys, s), "Trainable lr window per cell",
                 f"trains = {text.threshold_text(s)}; best lr = highest mean {s['metric']}, mean ± 95% CI over "
                 "seeds (n); first lr above = the smallest lr tried above the window.", main=True, min_n=min_n)

    report.text(text.judging_text(s, seeds))
    notes = compute.caveats(t, trials, points, keys, s)
    if notes:
        report.text("**Caveats (computed from the data).**\n\n" + "\n".join(f"- {n}" for n in notes))
    claims = claim_section(report, windows, keys)
    paired_res = paired_section(report, t, keys, seeds) if len(claims) else None
    trend = trend_section(report, windows, keys)
    edges = edge_section(report, t, layers, windows, keys, s)
    report.table("lr_window_long", windows, "Windows, numbers only",
                 f"trains = {text.threshold_text(s)}. low, high and width are NaN where nothing trains "
                 "(width_or_zero = 0 there); above/below = the nearest lrs tried outside the window; gaps = lrs "
                 "inside that fail; best_mean/best_ci/best_n over seeds, in %.", fold=True, min_n=min_n)
    report.table("lr_window_points", points, "Every cell and lr",
                 f"Mean ± 95% CI (ci = half-width) of final {s['metric']} (%) over seeds (diverged at chance, "
                 f"{s['chance']:.1f}%), outcomes, and whether it trains (mean > {s['threshold']:.1f}%).",
                 fold=True, min_n=min_n)
    report.findings(text.findings(windows, keys, s, claims, trend, paired_res, edges))


def claim_section(report: Report, windows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """He's window against N(0,1)'s and Xavier's, per context: statements and the table."""
    claims = compute.claim_table(windows, keys)
    if not len(claims):
        return claims
    view, lines = text.claim_view(claims, windows, keys)
    counts = "; ".join(x for x in (text.tally(claims, NORMAL), text.tally(claims, XAVIER)) if x)
    report.text("**What the data say about the claim** (He keeps a wider window as depth grows). He's window "
                f"width against N(0,1)'s and Xavier's, per cell (none = 0 decades; none is narrower than a "
                f"window of one lr). Counted over cells: {counts}.\n\n" + "\n".join(lines))
    report.table("lr_window_claim", view, "He against the other inits",
                 "Window width (decades) per cell; he_minus_* = He's width minus the other's, none counted as 0.",
                 min_n=ALL)
    return claims


def paired_section(report: Report, t: pd.DataFrame, keys: list[str], seeds: bool) -> pd.DataFrame | None:
    """Per-seed windows compared between inits, paired by seed; a sentence instead when there is one seed."""
    if not seeds:
        report.text("Each lr is a single draw (one seed per cell and lr): the widths above are single "
                    "measurements, and no test of the differences is possible.")
        return None
    res = compute.paired_widths(compute.seed_windows(t, keys), keys)
    if not len(res):
        return None
    res["statement"] = text.paired_statements(res)
    ctx = [k for k in keys if k != "init"]
    lines = [f"- {text.context_text(ctx, [r[k] for k in ctx])}: {r['statement']}" for _, r in res.iterrows()]
    report.text("**He's window against the others, seed by seed.** Each seed's own window (a lr trains for that "
                "seed when its trial does; none = 0 decades), compared between inits paired by seed:\n\n"
                + "\n".join(lines))
    report.table("lr_window_paired", res, "He against the other inits, seed by seed",
                 "Window width (decades), He minus the other init, paired by seed: diff, ci = 95% t half-width, "
                 "p (paired t), p_holm (Holm over the contexts of one comparison), d_z.", min_n=int(res["n"].min()))
    return res


def trend_section(report: Report, windows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    trend = compute.depth_trend(windows, keys)
    if not len(trend):
        return trend
    view, lines = text.trend_view(trend, keys)
    report.text("**Does the window narrow with depth?** Widths in decades at each depth, per init, BN and "
                "optimizer (none, where nothing trains, counts as narrower than a window of one lr, 0.00):\n\n"
                + "\n".join(lines))
    report.table("lr_window_depth", view, "Window width against depth", "Per init, BN and optimizer.", min_n=ALL)
    return trend


def edge_section(report: Report, t: pd.DataFrame, layers: pd.DataFrame, windows: pd.DataFrame,
                 keys: list[str], s: dict) -> str:
    """The layer statistics just inside and just above each window's upper edge; returns the sentence that
    sums them up ('' when there is nothing to sum up)."""
    has = compute.layer_columns(layers)
    missing = [c for c in LAYER_STATS if c not in has]
    intro = text.edge_intro(windows)
    if not has:
        report.text(intro + f"\n\nThis sweep's layers table has no {' or '.join(LAYER_STATS)} values (they are "
                    "recorded from issue 14 on): the edges cannot be explained from it.")
        return ""
    if missing:
        intro += f" This sweep's layers table has no {' or '.join(missing)} values: only {', '.join(has)} is shown."
    if not (windows["high"].notna() & windows["above"].notna()).any():
        report.text(intro)
        return ""
    per_layer, summary = compute.edge_tables(t, layers, windows, keys, has)
    if not len(summary):
        report.text(intro + " None of those trials has per-layer rows: nothing to compare.")
        return ""
    words = text.edge_words(summary, has)
    epoch1 = int(summary["epoch_used"].str.startswith("epoch 1:").sum())
    body = intro + (f"\n\n{words}" if words else "")
    if epoch1:
        body += f" {epoch1} of {len(summary)} edges are compared at epoch 1 (a trial stopped or diverged after it)."
    report.text(body)
    report.table("lr_window_edge_summary", summary, "Upper edges",
                 "One row per cell: the lrs just inside and just above, the epoch compared and why, their outcomes "
                 f"and mean {s['metric']} (%), and per-layer update ratio (median, max) and dead fraction (mean, "
                 "max) on each side.", min_n=ALL)
    report.table("lr_window_edges", per_layer, "Upper edges per layer",
                 "update_ratio and dead_fraction just inside (largest lr that trains) and just above (smallest lr "
                 "that fails), mean over seeds at `epoch`.", fold=True, min_n=ALL)
    picks = compute.representative(summary, keys)
    if len(picks):
        report.figure("lr_window_edges", figures.edge_figure(per_layer, picks, keys, has),
                      "Upper edge, representative cells",
                      "Per layer, " + " and ".join(has) + " just inside (solid) and just above (dashed) the window.")
    return words
