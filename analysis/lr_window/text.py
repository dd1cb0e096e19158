"""lr_window's words: the findings, the definitions, the readable tables and the statements per cell, all
written from the frames compute.py makes (nothing is computed here that a table does not already hold)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.lr_window.compute import HE, MARGIN, NORMAL, TOL, XAVIER
from analysis.stats import describe_difference, format_cell, format_p
from analysis.tables import fmt


def fmt_lr(x) -> str:
    return "none" if x is None or pd.isna(x) else f"{x:.3g}"


def fmt_width(w) -> str:
    return "none" if w is None or pd.isna(w) else f"{w:.2f}"


def key_text(k: str, v) -> str:
    if k == "bn":
        return "BN" if bool(v) else "no BN"
    if k == "depth":
        return f"depth {v}"
    if k in ("init", "optimizer", "opt"):
        return str(v)
    return f"{k}={fmt(v)}"


def context_text(keys, values) -> str:
    return ", ".join(key_text(k, v) for k, v in zip(keys, values))


def window_words(w) -> str:
    if pd.isna(w["high"]):
        return "none"
    return f"{fmt_lr(w['low'])} to {fmt_lr(w['high'])}, {w['width']:.2f} decades"


def threshold_text(s: dict) -> str:
    return (f"final {s['metric']} above {s['threshold']:.1f}% (chance {s['chance']:.1f}% for {s['classes']} "
            f"classes + {MARGIN:.0f} points)")


def judging_text(s: dict, seeds: bool) -> str:
    """How a trial, a lr and a cell's window are judged: the definitions under the findings."""
    return (
        f"**Which learning rates train.** A trial *trains* when its final {s['metric']} is above "
        f"{s['threshold']:.1f}% (chance {s['chance']:.1f}% for {s['classes']} classes + {MARGIN:.0f} points)"
        f"{s['note']}. Its final value is the "
        "last it reported: an early-stopped trial counts with the value at which it was stopped (ASHA stopped it "
        "because it ranked low at a rung, so it counts as not training unless it was already above the "
        "threshold); a diverged trial never trains (it counts at chance in means over seeds). "
        + ("Each lr ran with several seeds: a lr trains in a cell when the mean over its seeds is above the "
           "threshold. " if seeds else "Each lr ran once per cell (one seed). ")
        + "A cell's window runs from the lowest to the highest lr that trains; its width is log10(high / low) "
        "decades, and a cell where nothing trains reads \"none\" (width 0 in comparisons).")


# --- the main table ------------------------------------------------------------------------------------------------

def readable(windows: pd.DataFrame, keys: list[str], s: dict) -> pd.DataFrame:
    """The main table: lrs as text, 'none' for an empty window, the best lr's accuracy as mean ± CI (n)."""
    out = windows[keys].copy()
    out["lrs trained"] = [f"{a} of {b}" for a, b in zip(windows["lrs_trained"], windows["lrs_tried"])]
    out["lowest lr"] = windows["low"].map(fmt_lr)
    out["highest lr"] = windows["high"].map(fmt_lr)
    out["width (decades)"] = windows["width"].map(fmt_width)
    out["best lr"] = windows["best_lr"].map(fmt_lr)
    out[f"best {s['metric']} (%)"] = [format_cell(m, c, n) for m, c, n in
                                      zip(windows["best_mean"], windows["best_ci"], windows["best_n"])]
    out["first lr above"] = ["-" if pd.isna(h) else "top of range" if pd.isna(a) else fmt_lr(a)
                             for a, h in zip(windows["above"], windows["high"])]
    out["notes"] = [window_notes(w) for _, w in windows.iterrows()]
    return out


def window_notes(w) -> str:
    parts = []
    if not pd.isna(w["high"]):
        if w["lrs_trained"] == 1:
            parts.append("one lr trains")
        if w["gaps"]:
            parts.append(f"{w['gaps']} lr(s) inside fail")
        if pd.isna(w["above"]):
            parts.append("reaches the highest lr tried")
        if pd.isna(w["below"]):
            parts.append("reaches the lowest lr tried")
    if w["n_diverged"]:
        parts.append(f"{w['n_diverged']} diverged")
    if w["n_early_stopped"]:
        parts.append(f"{w['n_early_stopped']} early-stopped")
    return "; ".join(parts) or "-"


# --- He against the other inits ------------------------------------------------------------------------------------

def claim_view(claims: pd.DataFrame, windows: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """compute.claim_table with widths as text and a `statement` per context, and the statements as '- ' lines."""
    ctx = [k for k in keys if k != "init"]
    view, lines, statements = claims.copy(), [], []
    for _, row in claims.iterrows():
        where = [row[k] for k in ctx]
        by_init = {r["init"]: r for _, r in
                   windows[(windows[ctx] == pd.Series(dict(zip(ctx, where)))).all(axis=1)].iterrows()}
        clauses = []
        for other in (NORMAL, XAVIER):
            if f"he_vs_{other}" not in row or pd.isna(row[f"he_vs_{other}"]):
                continue
            diff, word = row[f"he_minus_{other}"], row[f"he_vs_{other}"]
            by = (f" by {abs(diff):.2f} decades" if abs(diff) > TOL
                  else " (one lr trains against none)" if word != "as wide as" else "")
            clauses.append(f"{word} {other}'s ({window_words(by_init[other])}){by}")
        sentence = f"{HE}'s window ({window_words(by_init[HE])}) is " + ", and ".join(clauses) + "."
        statements.append(sentence)
        lines.append(f"- {context_text(ctx, where)}: {sentence}")
    for init in (HE, NORMAL, XAVIER):
        if init in view:
            view[init] = view[init].map(fmt_width)
    view["statement"] = statements
    return view, lines


def tally(claims: pd.DataFrame, other: str) -> str:
    col = f"he_vs_{other}"
    if col not in claims:
        return ""
    counts = claims[col].value_counts()
    return (f"against {other}, He's window is wider in {counts.get('wider than', 0)}, as wide in "
            f"{counts.get('as wide as', 0)} and narrower in {counts.get('narrower than', 0)} of {len(claims)} cells")


# --- the window against depth ---------------------------------------------------------------------------------------

def trend_view(trend: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """compute.depth_trend as a table (context, widths at each depth, verdict) and '- ' lines."""
    ctx = [k for k in keys if k != "depth"]
    rows, lines = [], []
    for _, r in trend.iterrows():
        by_depth = dict(zip(r["depths"], r["widths"]))
        listing = ", ".join(f"{fmt_width(w)} at depth {d}" for d, w in by_depth.items())
        detail = ""
        if r["verdict"] == "not monotone":
            a, b = int(r["rise_from"]), int(r["rise_to"])
            detail = f" (widens from depth {a} ({fmt_width(by_depth[a])}) to depth {b} ({fmt_width(by_depth[b])}))"
        elif r["verdict"] == "narrows monotonically" and r["ends_none"]:
            detail = " (down to none)"
        rows.append({**{k: r[k] for k in ctx}, "widths": listing, "verdict": r["verdict"]})
        lines.append(f"- {context_text(ctx, [r[k] for k in ctx])}: {listing}: {r['verdict']}{detail}.")
    return pd.DataFrame(rows), lines


def verdict_count(trend: pd.DataFrame) -> str:
    """'narrows monotonically in 10, is constant in 2 and is not monotone in 4'."""
    counts = trend["verdict"].value_counts()
    order = ("narrows monotonically", "constant", "widens monotonically", "not monotone")
    parts = [f"{'' if v.endswith('ly') else 'is '}{v} in {counts[v]}" for v in order if v in counts]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


# --- seed by seed ---------------------------------------------------------------------------------------------------

def paired_statements(res: pd.DataFrame) -> list[str]:
    """One statement per row of compute.paired_widths."""
    out = []
    for _, r in res.iterrows():
        other = r["comparison"].rpartition(" vs ")[2]
        text = describe_difference(HE, other, r["diff"], r["ci"], r["n"], r["p"], "paired t", r["d_z"],
                                   unit="decades", word="wider")
        tested = res[res["comparison"] == r["comparison"]]["p"].notna().sum()
        if r["n"] >= 2 and pd.isna(r["p"]) and abs(r["diff"]) <= TOL:
            text = f"{HE} as wide as {other} in every seed ({int(r['n'])} seeds): no difference to test."
        elif r["n"] >= 2 and pd.isna(r["p"]):
            text = (f"{HE} {'wider' if r['diff'] > 0 else 'narrower'} than {other} by {abs(r['diff']):.2f} "
                    f"decades in every seed ({int(r['n'])} seeds): the same difference each time, so no t test.")
        elif r["n"] >= 2 and tested > 1:
            text += f" (Holm-adjusted over {int(tested)} cells: {format_p(r['p_holm'])})"
        out.append(text)
    return out


def paired_count(res: pd.DataFrame) -> str:
    """'significantly wider than normal's (...) in 1 and narrower in 0 of 2 tested cells; ...' per comparison."""
    parts = []
    for comparison, part in res.groupby("comparison", sort=False):
        other = comparison.rpartition(" vs ")[2]
        tested = part[part["p_holm"].notna()]
        if not len(tested):
            parts.append(f"not testable against {other}'s (no spread between seeds, or one seed)")
            continue
        wider = int(((tested["p_holm"] < 0.05) & (tested["diff"] > 0)).sum())
        narrower = int(((tested["p_holm"] < 0.05) & (tested["diff"] < 0)).sum())
        parts.append(f"significantly wider than {other}'s (paired t, Holm-adjusted p < 0.05) in {wider} and "
                     f"significantly narrower in {narrower} of {len(tested)} tested cells")
    return "; ".join(parts)


# --- the upper edge -------------------------------------------------------------------------------------------------

def edge_intro(windows: pd.DataFrame) -> str:
    n_edges = int((windows["high"].notna() & windows["above"].notna()).sum())
    at_top = int((windows["high"].notna() & windows["above"].isna()).sum())
    empty = int(windows["high"].isna().sum())
    return (f"**Explaining the upper edge.** {n_edges} of {len(windows)} cells have a window that ends below the "
            f"highest lr tried ({at_top} reach the top of the range, {empty} have none). For each, the largest lr "
            "inside the window (just inside) is set against the smallest lr above it (just above, the first that "
            "fails): per layer, `update_ratio` = ||W_end - W_start|| / ||W_start|| over the epoch and "
            "`dead_fraction` = the share of the layer's units whose ReLU is 0 for every image of a fixed batch of "
            "256 training images (NaN for the classifier), averaged over seeds, at the last epoch both lrs reached "
            "(epoch 1 where one of them stopped or diverged after epoch 1; the `epoch` column says which).")


def edge_words(summary: pd.DataFrame, columns: list[str]) -> str:
    """'Across the edges, the median layer's update ratio is 10 times larger just above ...', or ''."""
    words = []
    if "update_ratio" in columns:
        ratio = (summary["update_ratio_median_above"] / summary["update_ratio_median_inside"]).replace(
            [np.inf, -np.inf], np.nan).dropna()
        if len(ratio):
            words.append(f"the median layer's update ratio is {ratio.median():.3g} times larger just above the "
                         f"window than just inside (median over {len(ratio)} edges; larger in "
                         f"{int((ratio > 1).sum())} of them)")
    if "dead_fraction" in columns:
        both = summary[["dead_fraction_mean_inside", "dead_fraction_mean_above"]].dropna()
        if len(both):
            words.append(f"the mean dead fraction goes from {both['dead_fraction_mean_inside'].mean():.2f} just "
                         f"inside to {both['dead_fraction_mean_above'].mean():.2f} just above (mean over "
                         f"{len(both)} edges; higher above in "
                         f"{int((both['dead_fraction_mean_above'] > both['dead_fraction_mean_inside']).sum())})")
    return ("Across the edges, " + "; ".join(words) + ".") if words else ""


# --- the findings ---------------------------------------------------------------------------------------------------

def findings(windows: pd.DataFrame, keys: list[str], s: dict, claims: pd.DataFrame, trend: pd.DataFrame,
             paired_res: pd.DataFrame | None, edges: str) -> str:
    """The answers, one line each: how many cells train, He against the others, the trend with depth, the
    paired test and what happens at the upper edge."""
    trained = windows[windows["high"].notna()]
    lines = [f"- A lr trains when its {threshold_text(s)}: {len(trained)} of {len(windows)} cells have a window"
             + (f"; {len(windows) - len(trained)} train at no lr tried." if len(trained) < len(windows) else ".")]
    if len(trained):
        widest = trained.loc[trained["width"].idxmax()]
        ties = int((trained["width"] >= widest["width"] - TOL).sum()) - 1
        also = f", and {ties} other cell{'s' if ties > 1 else ''} as wide" if ties else ""
        lines.append(f"- Widest window: {window_words(widest)}, at {context_text(keys, [widest[k] for k in keys])}"
                     f"{also}.")
    if len(claims):
        counts = "; ".join(x for x in (tally(claims, NORMAL), tally(claims, XAVIER)) if x)
        lines.append(f"- {counts[0].upper()}{counts[1:]}.")
    if paired_res is not None and len(paired_res):
        lines.append(f"- Seed by seed, He's window is {paired_count(paired_res)}.")
    if len(trend):
        lines.append(f"- Against depth, the window {verdict_count(trend)} of {len(trend)} "
                     f"({', '.join(k for k in keys if k != 'depth')}) combinations.")
    if edges:
        lines.append(f"- {edges}")
    return "\n".join(lines)
