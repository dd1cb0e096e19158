"""lr_window's numbers: the judged metric and threshold, which trials train, each cell's window, the comparisons
between inits and depths, and the layer statistics at the window's upper edge. No words and no drawing here
(text.py, figures.py), with one exception kept as it was: `caveats`, whose early-stopping sentence belongs
with the scheduler settings it reads.

A trial *trains* when its final value of the judged metric (the search metric, val_acc by default; an accuracy)
is above chance + MARGIN points, chance = 1 / number of classes (trainables.geometry.NUM_CLASSES). A trial's
final value is the last one it reported: an early-stopped trial counts with the value it had when the scheduler
stopped it; a diverged trial never trains and counts at chance in means over seeds. Errored and interrupted
trials have no final value and are left out.

A *cell* is (init, depth, bn, optimizer), plus any other key the sweep varied besides lr. Per cell and lr the
seeds are averaged; a lr trains when that mean is above the threshold. The window of a cell runs from the lowest
to the highest lr that trains (lrs inside it that fail are counted as gaps); its width is log10(high / low)
decades; a cell where nothing trains has no window (NaN) and counts as width 0 in comparisons.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.document import ReportError
from analysis.search import search_settings
from analysis.stats import cell_stats, paired
from analysis.tables import varying_keys
from sweeps.engine import schedulers
from trainables.geometry import NUM_CLASSES, cnn_convs_on_1x1, cnn_map_sides, cnn_pools

BASE_KEYS = ("init", "depth", "bn", "optimizer")
JUDGED = ("completed", "early_stopped", "diverged")  # trials with a final value to judge
MARGIN = 10.0  # points above chance that count as training
HE, XAVIER, NORMAL = "he_normal", "xavier_normal", "normal"
INIT_ORDER = (HE, XAVIER, NORMAL)
LAYER_STATS = ("update_ratio", "dead_fraction")
TOL = 1e-9  # widths this close (decades) are "as wide"; a value this close (points) to the threshold is not above it


# --- the judged metric, the threshold and the trials' final values ---------------------------------------------

def judge_settings(source: str, trials: pd.DataFrame) -> dict:
    """The metric judged (the search metric when it is an accuracy), classes, chance and the threshold (%).
    `source`: the sweep's folder or URI, where sweep.json names the search metric."""
    try:
        search = search_settings(source, trials)
    except Exception:  # a report written elsewhere than <sweep>/report
        search = {}
    wanted = search.get("metric") or ""
    metric, note = wanted, ""
    if not (metric.endswith("_acc") and metric in trials and trials[metric].notna().any()):
        metric = next((m for m in ("val_acc", "test_acc") if m in trials and trials[m].notna().any()), "")
        if not metric:
            raise ReportError("lr_window: the trials hold neither val_acc nor test_acc: nothing to judge")
        if wanted and wanted != metric:
            note = f" (the search ranked trials by `{wanted}`, which is not an accuracy with values here)"
    datasets = sorted(trials["dataset"].dropna().astype(str).unique()) if "dataset" in trials else []
    classes = max((NUM_CLASSES.get(d, 10) for d in datasets), default=10)
    chance = 100.0 / classes
    return dict(metric=metric, note=note, search=search, datasets=datasets, classes=classes, chance=chance,
                threshold=chance + MARGIN)


def cell_keys(trials: pd.DataFrame) -> list[str]:
    """init, depth, bn, optimizer (those present), then any other key the sweep varied, lr aside."""
    base = [k for k in BASE_KEYS if k in trials]
    if "optimizer" not in trials and "opt" in trials:
        base.append("opt")
    return [k for k in varying_keys(trials, base) if k != "lr"]


def judged(trials: pd.DataFrame, epochs: pd.DataFrame, s: dict) -> pd.DataFrame:
    """Completed, early-stopped and diverged trials with `final` (their last reported metric, %), `score` (final,
    or chance for a diverged trial or one without a value), `ran` (epochs run) and `trains`."""
    t = trials[trials["status"].isin(JUDGED)].copy()
    metric = s["metric"]
    final = t[metric].astype(float)
    if epochs is not None and len(epochs) and metric in epochs:  # a trials row without its last value
        last = (epochs.dropna(subset=[metric]).sort_values("epoch").groupby("trial_id")[metric].last())
        final = final.fillna(t["trial_id"].map(last))
    t["final"] = final * 100
    diverged = t["status"].eq("diverged")
    t["score"] = t["final"].where(~diverged & np.isfinite(t["final"]), s["chance"])
    ran = t["epochs_completed"] if "epochs_completed" in t else pd.Series(np.nan, index=t.index)
    t["ran"] = pd.to_numeric(ran, errors="coerce")
    t["trains"] = ~diverged & (t["score"] > s["threshold"] + TOL)  # 0.2 * 100 is 20.000000000000004
    if "seed" not in t:
        t["seed"] = 0
    return t


# --- windows ---------------------------------------------------------------------------------------------------

def init_order(values) -> list:
    """He, Xavier, N(0,1) first, in that order, then any other init alphabetically."""
    values = list(pd.unique(pd.Series(list(values))))
    return [v for v in INIT_ORDER if v in values] + sorted(v for v in values if v not in INIT_ORDER)


def ordered(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows sorted by `keys`, inits in INIT_ORDER (He, Xavier, N(0,1)) rather than alphabetically."""
    if not len(df) or not keys:
        return df.reset_index(drop=True)
    rank = {v: i for i, v in enumerate(init_order(df["init"]))} if "init" in df else {}
    return df.sort_values(keys, key=lambda c: c.map(rank) if c.name == "init" else c,
                          kind="stable").reset_index(drop=True)


def select(df: pd.DataFrame, keys: list[str], values) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for k, v in zip(keys, values):
        mask &= df[k] == v
    return df[mask]


def window_of(lrs, trains) -> dict:
    """low/high (NaN when nothing trains), width in decades, gaps (lrs inside that fail), the first lr above
    the window and the last below it (NaN at the ends of the range)."""
    lrs = np.asarray(lrs, dtype=float)
    ok = np.asarray(trains, dtype=bool)
    out = dict(low=math.nan, high=math.nan, width=math.nan, gaps=0, above=math.nan, below=math.nan)
    if not ok.any():
        return out
    low, high = float(lrs[ok].min()), float(lrs[ok].max())
    inside = (lrs >= low) & (lrs <= high)
    out.update(low=low, high=high, width=math.log10(high / low), gaps=int((inside & ~ok).sum()))
    if (lrs > high).any():
        out["above"] = float(lrs[lrs > high].min())
    if (lrs < low).any():
        out["below"] = float(lrs[lrs < low].max())
    return out


def lr_points(t: pd.DataFrame, keys: list[str], s: dict) -> pd.DataFrame:
    """One row per cell and lr: mean ± CI of the score over seeds, outcome counts, epochs run, trains."""
    stats = cell_stats(t, [*keys, "lr"], "score")
    rows = []
    for key, part in t.groupby([*keys, "lr"], sort=True, dropna=False):
        early = part[part["status"] == "early_stopped"]["ran"].dropna().astype(int)
        rows.append(dict(zip([*keys, "lr"], key), n_completed=int((part["status"] == "completed").sum()),
                         n_early_stopped=len(part[part["status"] == "early_stopped"]),
                         n_diverged=int((part["status"] == "diverged").sum()),
                         stopped_at=", ".join(str(e) for e in sorted(early.unique()))))
    out = stats.merge(pd.DataFrame(rows), on=[*keys, "lr"], how="left")
    out["trains"] = (out["mean"] > s["threshold"] + TOL) & (out["n_diverged"] < out["n"])
    return ordered(out, [*keys, "lr"])


def window_table(points: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per cell: lrs tried and trained, low, high, width, gaps, above, below, and the best lr."""
    rows = []
    for key, part in points.groupby(keys, sort=True, dropna=False):
        part = part.sort_values("lr")
        w = window_of(part["lr"], part["trains"])
        best = part.loc[part["mean"].idxmax()]
        rows.append({**dict(zip(keys, key if isinstance(key, tuple) else (key,))),
                     "lrs_tried": len(part), "lrs_trained": int(part["trains"].sum()),
                     "lr_min_tried": float(part["lr"].min()), "lr_max_tried": float(part["lr"].max()),
                     **w, "best_lr": float(best["lr"]), "best_mean": float(best["mean"]),
                     "best_ci": float(best["ci"]), "best_n": int(best["n"]),
                     "n_early_stopped": int(part["n_early_stopped"].sum()),
                     "n_diverged": int(part["n_diverged"].sum())})
    out = pd.DataFrame(rows)
    out["width_or_zero"] = out["width"].fillna(0.0)
    return ordered(out, keys)


def seed_windows(t: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per cell and seed: that seed's own window (a trial trains on its own), width 0 when none."""
    rows = []
    for key, part in t.groupby([*keys, "seed"], sort=True, dropna=False):
        part = part.groupby("lr", sort=True)["trains"].mean() > 0.5  # one trial per lr and seed
        w = window_of(part.index, part.to_numpy())
        rows.append({**dict(zip([*keys, "seed"], key)), "low": w["low"], "high": w["high"],
                     "width": 0.0 if pd.isna(w["width"]) else w["width"]})
    return pd.DataFrame(rows)


# --- comparisons: He against the other inits, the window against depth -----------------------------------------

def rank_width(width) -> float:
    """Width for ordering: none below a window of one lr (0 decades), which is below any wider one."""
    return -1.0 if pd.isna(width) else float(width)


def compare_word(a, b) -> str:
    """'wider than', 'as wide as' or 'narrower than' for windows of widths a and b (NaN = none)."""
    diff = rank_width(a) - rank_width(b)
    return "as wide as" if abs(diff) <= TOL else ("wider than" if diff > 0 else "narrower than")


def claim_table(windows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per context (every cell key but init) where He ran beside N(0,1) or Xavier: each init's window width
    (NaN = none), He's width minus the other's (none as 0) and which is wider."""
    if "init" not in keys or HE not in set(windows["init"]):
        return pd.DataFrame()
    ctx = [k for k in keys if k != "init"]
    rows = []
    for key, part in (windows.groupby(ctx, sort=True) if ctx else [((), windows)]):
        key = key if isinstance(key, tuple) else (key,)
        by_init = {r["init"]: r for _, r in part.iterrows()}
        others = [o for o in (NORMAL, XAVIER) if o in by_init]
        if HE not in by_init or not others:
            continue
        he = by_init[HE]
        row = {**dict(zip(ctx, key)), HE: he["width"]}
        for other in others:
            o = by_init[other]
            row[other] = o["width"]
            row[f"he_minus_{other}"] = round(he["width_or_zero"] - o["width_or_zero"], 6)
            row[f"he_vs_{other}"] = compare_word(he["width"], o["width"])
        rows.append(row)
    return pd.DataFrame(rows)


def depth_trend(windows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per init (and bn, optimizer, ...): the depths and widths in depth order, the verdict (constant,
    narrows monotonically, widens monotonically, not monotone), the first step where the window widens
    (rise_from, rise_to) and whether it ends with no window."""
    if "depth" not in keys or windows["depth"].nunique() < 2:
        return pd.DataFrame()
    ctx = [k for k in keys if k != "depth"]
    rows = []
    for key, part in (windows.groupby(ctx, sort=True) if ctx else [((), windows)]):
        key = key if isinstance(key, tuple) else (key,)
        part = part.sort_values("depth")
        depths, widths = part["depth"].tolist(), part["width"].tolist()
        steps = np.diff([rank_width(w) for w in widths])
        rises = [(depths[i], depths[i + 1]) for i, d in enumerate(steps) if d > TOL]
        falls = [(depths[i], depths[i + 1]) for i, d in enumerate(steps) if d < -TOL]
        verdict = ("constant" if not rises and not falls else "narrows monotonically" if not rises
                   else "widens monotonically" if not falls else "not monotone")
        rise = rises[0] if rises else (math.nan, math.nan)
        rows.append({**dict(zip(ctx, key)), "depths": depths, "widths": widths, "verdict": verdict,
                     "rise_from": rise[0], "rise_to": rise[1], "ends_none": bool(pd.isna(widths[-1]))})
    return pd.DataFrame(rows)


def paired_widths(per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """He's per-seed window width against N(0,1)'s and Xavier's, paired by seed, per context (paired t; Holm
    over the contexts of one comparison)."""
    ctx = [k for k in keys if k != "init"]
    frames = []
    for other in (NORMAL, XAVIER):
        if not {HE, other} <= set(per_seed["init"]):
            continue
        res = paired(per_seed, "init", HE, other, "width", pair_on=["seed"], by=ctx)
        if len(res):
            res.insert(len(ctx), "comparison", f"{HE} vs {other}")
            frames.append(res)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# --- data caveats --------------------------------------------------------------------------------------------------

def caveats(t: pd.DataFrame, trials: pd.DataFrame, points: pd.DataFrame, keys: list[str], s: dict) -> list[str]:
    notes = []
    if "depth" in t and ("model" not in t or set(t["model"].dropna()) <= {"cnn"}):
        for depth in sorted(t["depth"].unique()):
            # the model's own pooling rule (trainables/geometry.py), which its builder follows
            side, flat = cnn_map_sides(depth)[-1], cnn_convs_on_1x1(depth)
            if flat:
                notes.append(f"At depth {depth} the feature map reaches 1x1 after {cnn_pools(depth)} pools (pooling "
                             f"stops at 1x1), so the last {flat} of its {depth} convs see a 1x1 map, where a 3x3 "
                             "kernel with padding acts as a 1x1 conv: depth there adds channel mixing, not spatial "
                             "context.")
            elif side > 1 and depth == max(t["depth"]):
                notes.append(f"The deepest net (depth {depth}) ends on a {side}x{side} map.")
    sources = sorted(trials["data_source"].dropna().astype(str).unique()) if "data_source" in trials else []
    data = ", ".join(s["datasets"]) or "unknown"
    n_train = f"{int(trials['n_train'].max()):,} training images" if "n_train" in trials and \
        trials["n_train"].notna().any() else "training images not recorded"
    n_val = (f", {int(trials['n_val'].max()):,} validation images" if "n_val" in trials and
             trials["n_val"].notna().any() else "")
    if "synthetic" in sources or "synthetic" in s["datasets"]:
        notes.append(f"Synthetic images ({n_train}{n_val}): the windows say how this code trains on noise with "
                     "a class pattern, nothing about CIFAR.")
    elif "subset" in sources:
        notes.append(f"Data: a subset of {data} ({n_train}{n_val}), not the full set: windows on the full set "
                     "may be wider (more steps per epoch) or placed elsewhere.")
    else:
        notes.append(f"Data: {data} ({'/'.join(sources) or 'source not recorded'}; {n_train}{n_val}).")
    if "epochs" in t:
        planned = sorted(int(e) for e in t["epochs"].dropna().unique())
        notes.append(f"Trials were planned for {', '.join(map(str, planned))} epoch(s): a small lr that fails in "
                     "that budget may train with more epochs, so a window's lower edge is a statement about this "
                     "budget.")
    early = t[t["status"] == "early_stopped"]
    if len(early):
        rungs = ", ".join(str(int(e)) for e in sorted(early["ran"].dropna().unique()))
        scheduler = schedulers.called(s["search"].get("scheduler"))
        above = int(early["trains"].sum())
        ranking = ("ranks each trial only against the other trials of its own cell (search scope cell), yet a "
                   "slow-starting lr can still lose a rung to a faster one of the same cell"
                   if s["search"].get("search_scope") == "cell" else
                   "ranks every trial of the sweep together, across cells (search scope sweep), so a slow-starting "
                   "cell's lrs can be stopped together")
        notes.append(f"{len(early)} of {len(t)} trials were stopped early by {scheduler} (after epoch(s) "
                     f"{rungs}) and are judged at the value they had then: the scheduler {ranking}, and be counted "
                     f"out of a window it would have reached ({above} of them were already above the threshold and "
                     "count as training).")
    lost = trials[~trials["status"].isin(JUDGED)]
    if len(lost):
        counts = ", ".join(f"{n} {st}" for st, n in sorted(lost["status"].value_counts().items()))
        notes.append(f"{len(lost)} trial(s) have no final value and are left out ({counts}).")
    gaps = []
    for _, part in (points.groupby(keys, sort=False) if keys else [((), points)]):
        lrs = np.log10(np.sort(part["lr"].unique()))
        if len(lrs) > 1:
            gaps.extend(np.diff(lrs))
    if gaps:
        notes.append(f"Edges are only as sharp as the lrs tried: adjacent lrs are {np.median(gaps):.2f} decades "
                     f"apart (median; largest gap {max(gaps):.2f}), so each edge is known to within that spacing.")
    return notes


# --- the window's upper edge -------------------------------------------------------------------------------------

def layer_columns(layers: pd.DataFrame | None) -> list[str]:
    """The LAYER_STATS the sweep's layers table holds values of (older sweeps have none)."""
    return [c for c in LAYER_STATS if layers is not None and c in layers and layers[c].notna().any()]


def edge_tables(t: pd.DataFrame, layers: pd.DataFrame, windows: pd.DataFrame, keys: list[str],
                columns: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per cell whose window ends below the highest lr tried: per layer, the layer statistics of the largest lr
    inside the window and the smallest lr above it, averaged over seeds, at the last epoch both reached."""
    per_layer, summary = [], []
    layers = layers[layers["trial_id"].isin(t["trial_id"])]
    by_trial = {tid: part for tid, part in layers.groupby("trial_id", sort=False)}
    last = layers.groupby("trial_id")["epoch"].max()
    cells = {key if isinstance(key, tuple) else (key,): part for key, part in t.groupby(keys, sort=False)}
    for _, w in windows.iterrows():
        if pd.isna(w["high"]) or pd.isna(w["above"]):
            continue
        cell = cells[tuple(w[k] for k in keys)]
        sides = {"inside": cell[np.isclose(cell["lr"], w["high"], rtol=1e-12, atol=0)],
                 "above": cell[np.isclose(cell["lr"], w["above"], rtol=1e-12, atol=0)]}
        ends = {side: last.reindex(part["trial_id"]).dropna() for side, part in sides.items()}
        if any(not len(e) for e in ends.values()):
            continue
        epoch = int(min(e.min() for e in ends.values()))
        latest = int(max(e.max() for e in ends.values()))
        if epoch == 1 and latest > 1:
            short = [side for side, e in ends.items() if e.min() == 1]
            why = f"epoch 1: the lr {' and '.join(short)} stopped after epoch 1"
        elif epoch == latest:
            why = f"epoch {epoch}: the last epoch of both"
        else:
            why = f"epoch {epoch}: the last epoch both reached"
        stats = {}
        for side, part in sides.items():
            rows = pd.concat([by_trial[tid] for tid in part["trial_id"] if tid in by_trial])
            rows = rows[rows["epoch"] == epoch]
            stats[side] = rows.groupby(["layer", "layer_name"], sort=True)[columns].mean()
        joined = stats["inside"].add_suffix("_inside").join(stats["above"].add_suffix("_above"), how="outer")
        status = {side: ", ".join(f"{n} {st}" for st, n in sorted(part["status"].value_counts().items()))
                  for side, part in sides.items()}
        base = {**{k: w[k] for k in keys}, "lr_inside": w["high"], "lr_above": w["above"], "epoch": epoch}
        for (layer, name), r in joined.iterrows():
            per_layer.append({**base, "layer": int(layer), "layer_name": name,
                              **{f"{c}_{side}": r[f"{c}_{side}"] for c in columns for side in ("inside", "above")}})
        row = {**base, "epoch_used": why, "status_inside": status["inside"], "status_above": status["above"],
               "acc_inside": float(sides["inside"]["score"].mean()), "acc_above": float(sides["above"]["score"].mean())}
        if "update_ratio" in columns:
            for side in ("inside", "above"):
                values = joined[f"update_ratio_{side}"].replace([np.inf, -np.inf], np.nan)
                row[f"update_ratio_median_{side}"] = float(values.median())
                row[f"update_ratio_max_{side}"] = float(values.max())
        if "dead_fraction" in columns:
            for side in ("inside", "above"):
                values = joined[f"dead_fraction_{side}"]
                row[f"dead_fraction_mean_{side}"] = float(values.mean())
                row[f"dead_fraction_max_{side}"] = float(values.max())
            above = joined["dead_fraction_above"].dropna()
            row["most_dead_layer_above"] = str(above.idxmax()[1]) if len(above) else "-"
        summary.append(row)
    return pd.DataFrame(per_layer), pd.DataFrame(summary)


def representative(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A few cells to draw: the (bn, optimizer, ...) combination closest to 'no BN, SGD' that has edges, and in
    it each init's deepest cell with an edge (He and N(0,1) first)."""
    if not len(summary):
        return summary
    ctx = [k for k in keys if k not in ("init", "depth")]
    pref = pd.Series(0, index=summary.index)
    if "bn" in summary:
        pref += (~summary["bn"].astype(bool)).astype(int) * 2
    for opt in ("optimizer", "opt"):
        if opt in summary:
            pref += (summary[opt] == "sgd").astype(int)
    top = summary[pref == pref.max()]
    if ctx:
        first = top.iloc[0]
        top = select(top, ctx, [first[k] for k in ctx])
    picks = []
    order = init_order(top["init"]) if "init" in top else [None]
    for init in order:
        part = top if init is None else top[top["init"] == init]
        picks.append(part.sort_values("depth" if "depth" in part else "lr_inside").iloc[-1])
    return pd.DataFrame(picks).head(3)
