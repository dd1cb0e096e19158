"""Report for the lr_window study (issue 14): which learning rates train, per depth, init, BatchNorm and optimizer.

A trial *trains* when its final value of the judged metric (the search metric, val_acc by default; an accuracy)
is above chance + 10 points, chance = 1 / number of classes (20% on CIFAR-10). A trial's final value is the last
one it reported: an early-stopped trial counts with the value it had when the scheduler stopped it (ASHA stops
the trials that rank low at a rung, so they count as not training unless already above the threshold); a
diverged trial never trains and counts at chance in means over seeds. Errored and interrupted trials have no
final value and are left out (counted in the text).

A *cell* is (init, depth, bn, optimizer), plus any other key the sweep varied besides lr. Per cell and lr the
seeds are averaged; a lr trains when that mean is above the threshold. The window of a cell runs from the lowest
to the highest lr that trains (lrs inside it that fail are counted as gaps); its width is log10(high / low)
decades; a cell where nothing trains reads "none" and counts as width 0 in comparisons.

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

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.document import Report, ReportError  # noqa: E402
from analysis.search import search_settings  # noqa: E402
from analysis.stats import cell_stats, describe_difference, format_cell, format_p, paired  # noqa: E402
from analysis.tables import fmt, varying_keys  # noqa: E402

BASE_KEYS = ("init", "depth", "bn", "optimizer")
JUDGED = ("completed", "early_stopped", "diverged")  # trials with a final value to judge
CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}  # classes per data set (trainables/data.py)
MARGIN = 10.0  # points above chance that count as training
HE, XAVIER, NORMAL = "he_normal", "xavier_normal", "normal"
INIT_ORDER = (HE, XAVIER, NORMAL)
LAYER_STATS = ("update_ratio", "dead_fraction")
IMAGE_SIZE = 32  # CIFAR and the synthetic set: 32 x 32 images
BAND = "#dcf0d5"  # the window's band in the map
BAND_EDGE = "#1b7837"
SCHEDULER_NAMES = {"asha": "ASHA", "hyperband": "HyperBand", "median": "the median stopping rule",
                   "pbt": "PBT"}
TOL = 1e-9  # widths this close (decades) are "as wide"; a value this close (points) to the threshold is not above it


# --- the judged metric, the threshold and the trials' final values ---------------------------------------------

def judge_settings(report: Report, trials: pd.DataFrame) -> dict:
    """The metric judged (the search metric when it is an accuracy), classes, chance and the threshold (%)."""
    try:
        search = search_settings(report.source or str(report.outdir.parent), trials)
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
    classes = max((CLASSES.get(d, 10) for d in datasets), default=10)
    chance = 100.0 / classes
    return dict(metric=metric, note=note, search=search, datasets=datasets, classes=classes, chance=chance,
                threshold=chance + MARGIN)


def threshold_text(s: dict) -> str:
    return (f"final {s['metric']} above {s['threshold']:.1f}% (chance {s['chance']:.1f}% for {s['classes']} "
            f"classes + {MARGIN:.0f} points)")


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

def fmt_lr(x) -> str:
    return "none" if x is None or pd.isna(x) else f"{x:.3g}"


def fmt_width(w) -> str:
    return "none" if w is None or pd.isna(w) else f"{w:.2f}"


def ordered(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows sorted by `keys`, inits in INIT_ORDER (He, Xavier, N(0,1)) rather than alphabetically."""
    if not len(df) or not keys:
        return df.reset_index(drop=True)
    rank = {v: i for i, v in enumerate(init_order(df["init"]))} if "init" in df else {}
    return df.sort_values(keys, key=lambda c: c.map(rank) if c.name == "init" else c,
                          kind="stable").reset_index(drop=True)


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
    notes = []
    for _, w in windows.iterrows():
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
        notes.append("; ".join(parts) or "-")
    out["notes"] = notes
    return out


# --- words -----------------------------------------------------------------------------------------------------

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


def init_order(values) -> list:
    values = list(pd.unique(pd.Series(list(values))))
    return [v for v in INIT_ORDER if v in values] + sorted(v for v in values if v not in INIT_ORDER)


def window_words(w) -> str:
    if pd.isna(w["high"]):
        return "none"
    return f"{fmt_lr(w['low'])} to {fmt_lr(w['high'])}, {w['width']:.2f} decades"


def rank_width(width) -> float:
    """Width for ordering: none below a window of one lr (0 decades), which is below any wider one."""
    return -1.0 if pd.isna(width) else float(width)


def compare_word(a, b) -> str:
    """'wider than', 'as wide as' or 'narrower than' for windows of widths a and b (NaN = none)."""
    diff = rank_width(a) - rank_width(b)
    return "as wide as" if abs(diff) <= TOL else ("wider than" if diff > 0 else "narrower than")


def claim_table(windows: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Per context (every cell key but init): He's width against N(0,1)'s and Xavier's, 'none' as 0."""
    if "init" not in keys or HE not in set(windows["init"]):
        return pd.DataFrame(), []
    ctx = [k for k in keys if k != "init"]
    rows, lines = [], []
    for key, part in (windows.groupby(ctx, sort=True) if ctx else [((), windows)]):
        key = key if isinstance(key, tuple) else (key,)
        by_init = {r["init"]: r for _, r in part.iterrows()}
        if HE not in by_init:
            continue
        he = by_init[HE]
        row = {**dict(zip(ctx, key)), "he_normal": fmt_width(he["width"])}
        clauses = []
        for other in (NORMAL, XAVIER):
            if other not in by_init:
                continue
            o = by_init[other]
            diff = he["width_or_zero"] - o["width_or_zero"]
            word = compare_word(he["width"], o["width"])
            row[other] = fmt_width(o["width"])
            row[f"he_minus_{other}"] = round(diff, 6)
            row[f"he_vs_{other}"] = word
            by = (f" by {abs(diff):.2f} decades" if abs(diff) > TOL
                  else " (one lr trains against none)" if word != "as wide as" else "")
            clauses.append(f"{word} {other}'s ({window_words(o)}){by}")
        if not clauses:
            continue
        sentence = f"he_normal's window ({window_words(he)}) is " + ", and ".join(clauses) + "."
        row["statement"] = sentence
        rows.append(row)
        lines.append(f"- {context_text(ctx, key)}: {sentence}")
    return pd.DataFrame(rows), lines


def tally(claims: pd.DataFrame, other: str) -> str:
    col = f"he_vs_{other}"
    if col not in claims:
        return ""
    counts = claims[col].value_counts()
    return (f"against {other}, He's window is wider in {counts.get('wider than', 0)}, as wide in "
            f"{counts.get('as wide as', 0)} and narrower in {counts.get('narrower than', 0)} of {len(claims)} cells")


def depth_trend(windows: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Per init (and bn, optimizer, ...): the widths in depth order and whether they narrow monotonically."""
    if "depth" not in keys or windows["depth"].nunique() < 2:
        return pd.DataFrame(), []
    ctx = [k for k in keys if k != "depth"]
    rows, lines = [], []
    groups = windows.groupby(ctx, sort=True) if ctx else [((), windows)]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        part = part.sort_values("depth")
        depths, widths = part["depth"].tolist(), np.array([rank_width(w) for w in part["width"]])
        steps = np.diff(widths)
        rises = [(depths[i], depths[i + 1]) for i, d in enumerate(steps) if d > TOL]
        falls = [(depths[i], depths[i + 1]) for i, d in enumerate(steps) if d < -TOL]
        if not rises and not falls:
            verdict = "constant"
        elif not rises:
            verdict = "narrows monotonically"
        elif not falls:
            verdict = "widens monotonically"
        else:
            verdict = "not monotone"
        listing = ", ".join(f"{fmt_width(w)} at depth {d}" for d, w in zip(depths, part["width"]))
        detail = ""
        if verdict == "not monotone":
            a, b = rises[0]
            wa, wb = part.set_index("depth").loc[[a, b], "width"]
            detail = f" (widens from depth {a} ({fmt_width(wa)}) to depth {b} ({fmt_width(wb)}))"
        elif verdict == "narrows monotonically" and widths[-1] < 0:
            detail = " (down to none)"
        row = {**dict(zip(ctx, key)), "widths": listing, "verdict": verdict}
        rows.append(row)
        lines.append(f"- {context_text(ctx, key)}: {listing}: {verdict}{detail}.")
    return pd.DataFrame(rows), lines


def paired_widths(report: Report, per_seed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """He's per-seed window width against N(0,1)'s and Xavier's, paired by seed, per context."""
    ctx = [k for k in keys if k != "init"]
    frames = []
    for other in (NORMAL, XAVIER):
        if not {HE, other} <= set(per_seed["init"]):
            continue
        res = paired(per_seed, "init", HE, other, "width", pair_on=["seed"], by=ctx)
        if not len(res):
            continue
        res.insert(len(ctx), "comparison", f"{HE} vs {other}")
        statements = []
        for _, r in res.iterrows():
            text = describe_difference(HE, other, r["diff"], r["ci"], r["n"], r["p"], "paired t", r["d_z"],
                                       unit="decades", word="wider")
            if r["n"] >= 2 and pd.isna(r["p"]) and abs(r["diff"]) <= TOL:
                text = f"{HE} as wide as {other} in every seed ({int(r['n'])} seeds): no difference to test."
            elif r["n"] >= 2 and pd.isna(r["p"]):
                text = (f"{HE} {'wider' if r['diff'] > 0 else 'narrower'} than {other} by {abs(r['diff']):.2f} "
                        f"decades in every seed ({int(r['n'])} seeds): the same difference each time, so no t test.")
            elif r["n"] >= 2 and (res["p"].notna().sum() > 1):
                text += f" (Holm-adjusted over {int(res['p'].notna().sum())} cells: {format_p(r['p_holm'])})"
            statements.append(text)
        res["statement"] = statements
        frames.append(res)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    lines = [f"- {context_text(ctx, [r[k] for k in ctx])}: {r['statement']}" for _, r in out.iterrows()]
    report.text("**He's window against the others, seed by seed.** Each seed's own window (a lr trains for that "
                "seed when its trial does; none = 0 decades), compared between inits paired by seed:\n\n"
                + "\n".join(lines))
    report.table("lr_window_paired", out,
                 "Window width (decades), He minus the other init, paired by seed: diff, ci = 95% t half-width, "
                 "p (paired t), p_holm (Holm over the contexts of one comparison), d_z", min_n=int(out["n"].min()))
    return out


# --- caveats -----------------------------------------------------------------------------------------------------

def map_size(depth: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """(final map side, convs that see a 1x1 map) of the study-000 CNN (trainables/models/cnn.py: a 2x2 pool
    after every second block, none once the map is 1x1)."""
    first = None
    for block in range(1, int(depth)):
        if block % 2 == 0 and size > 1:
            size //= 2
            if size == 1:
                first = block
    return size, (int(depth) - 1 - first) if first is not None else 0


def caveats(t: pd.DataFrame, trials: pd.DataFrame, points: pd.DataFrame, keys: list[str], s: dict) -> list[str]:
    notes = []
    if "depth" in t and ("model" not in t or set(t["model"].dropna()) <= {"cnn"}):
        for depth in sorted(t["depth"].unique()):
            side, flat = map_size(depth)
            if flat:
                notes.append(f"At depth {depth} the feature map reaches 1x1 after 5 pools (pooling stops at 1x1), "
                             f"so the last {flat} of its {depth} convs see a 1x1 map, where a 3x3 kernel with "
                             "padding acts as a 1x1 conv: depth there adds channel mixing, not spatial context.")
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
        scheduler = SCHEDULER_NAMES.get(s["search"].get("scheduler"), "the scheduler")
        above = int(early["trains"].sum())
        notes.append(f"{len(early)} of {len(t)} trials were stopped early by {scheduler} (after epoch(s) "
                     f"{rungs}) and are judged at the value they had then: the scheduler ranks every trial of the "
                     "sweep together, across cells, so a slow-starting lr can be stopped and counted out of a window "
                     f"it would have reached ({above} of them were already above the threshold and count as "
                     "training).")
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


# --- the map -----------------------------------------------------------------------------------------------------

def panel_grid(t: pd.DataFrame, keys: list[str]) -> tuple[list, list, list[str]]:
    """Rows = inits, columns = the combinations of the other non-depth keys (bn, optimizer, ...)."""
    inits = init_order(t["init"]) if "init" in keys else [None]
    col_keys = [k for k in keys if k not in ("init", "depth")]
    if col_keys:
        combos = t[col_keys].drop_duplicates()
        # BN on before off, then the other keys in sorted order (adam before sgd)
        combos = combos.sort_values(col_keys, ascending=[not pd.api.types.is_bool_dtype(combos[k]) for k in col_keys])
        cols = [tuple(r) for r in combos.itertuples(index=False)]
    else:
        cols = [()]
    return inits, cols, col_keys


def select(df: pd.DataFrame, keys: list[str], values) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for k, v in zip(keys, values):
        mask &= df[k] == v
    return df[mask]


def label_rungs(ax, x, y, ran, close: float = 0.2) -> None:
    """Label early-stopped markers with the epochs they ran; markers of one row less than `close` decades apart
    share one label ('1' or '1,3') so labels never overprint."""
    frame = pd.DataFrame({"x": np.log10(np.asarray(x, dtype=float)), "y": np.round(np.asarray(y, dtype=float), 6),
                          "ran": np.asarray(ran, dtype=float)}).dropna()
    for yv, part in frame.groupby("y", sort=False):
        part = part.sort_values("x")
        group = (part["x"].diff() > close).cumsum()
        for _, g in part.groupby(group):
            text = ",".join(str(int(r)) for r in sorted(g["ran"].unique()))
            ax.annotate(text, (10 ** g["x"].mean(), yv), xytext=(0, 3.5), textcoords="offset points", ha="center",
                        va="bottom", fontsize=5.5, color="0.15", zorder=4)


def map_figure(t: pd.DataFrame, windows: pd.DataFrame, keys: list[str], s: dict):
    inits, cols, col_keys = panel_grid(t, keys)
    depths = sorted(t["depth"].unique()) if "depth" in keys else [None]
    seeds = sorted(t["seed"].unique())
    k = len(seeds)
    step = min(0.24, 0.72 / max(k, 1))
    offset = {sd: (i - (k - 1) / 2) * step for i, sd in enumerate(seeds)}
    nrows, ncols = len(inits), len(cols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols + 1.2, 0.5 * len(depths) * nrows + 0.9 * nrows + 1.3),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    norm, cmap = Normalize(0, 100), plt.get_cmap("viridis")
    lr_lo, lr_hi = float(t["lr"].min()), float(t["lr"].max())
    pad = 10 ** 0.25
    many = t.groupby([*keys, "seed"])["lr"].nunique().max() > 24  # too many labels to read
    for i, init in enumerate(inits):
        for j, col in enumerate(cols):
            ax = axes[i][j]
            sub = select(t, (["init"] if init is not None else []) + col_keys,
                         ([init] if init is not None else []) + list(col))
            wsub = select(windows, (["init"] if init is not None else []) + col_keys,
                          ([init] if init is not None else []) + list(col))
            for y, depth in enumerate(depths):
                row = sub if depth is None else sub[sub["depth"] == depth]
                w = wsub if depth is None else wsub[wsub["depth"] == depth]
                if len(w) and not pd.isna(w["high"].iloc[0]):
                    low, high = w["low"].iloc[0] / 10 ** 0.08, w["high"].iloc[0] * 10 ** 0.08
                    half = 0.3 if k == 1 else min(0.46, (k - 1) / 2 * step + 0.16)
                    ax.add_patch(Rectangle((low, y - half), high - low, 2 * half, facecolor=BAND, edgecolor=BAND_EDGE,
                                           lw=1.0, zorder=0))
                ys = y + row["seed"].map(offset).to_numpy(dtype=float)
                done = (row["status"] == "completed").to_numpy()
                early = (row["status"] == "early_stopped").to_numpy()
                div = (row["status"] == "diverged").to_numpy()
                x = row["lr"].to_numpy(dtype=float)
                c = row["score"].to_numpy(dtype=float)
                ax.scatter(x[done], ys[done], c=c[done], cmap=cmap, norm=norm, marker="o", s=30,
                           edgecolors="0.3", linewidths=0.4, zorder=3)
                ax.scatter(x[early], ys[early], c=c[early], cmap=cmap, norm=norm, marker="v", s=34,
                           edgecolors="black", linewidths=0.8, zorder=3)
                ax.scatter(x[div], ys[div], color="tab:red", marker="x", s=26, linewidths=1.3, zorder=3)
                if not many:
                    label_rungs(ax, x[early], ys[early], row["ran"].to_numpy()[early])
            ax.set_xscale("log")
            ax.set_xlim(lr_lo / pad, lr_hi * pad)
            ax.set_ylim(-0.55, len(depths) - 0.45)
            ax.set_yticks(range(len(depths)), [str(d) for d in depths] if depths != [None] else [""])
            ax.tick_params(labelsize=7)
            ax.grid(axis="x", alpha=0.25, which="major")
            title = ", ".join([*([str(init)] if init is not None else []),
                               *(key_text(kk, v) for kk, v in zip(col_keys, col))])
            ax.set_title(title, fontsize=8.5)
            if j == 0:
                ax.set_ylabel("depth", fontsize=8)
            if i == nrows - 1:
                ax.set_xlabel("lr (log)", fontsize=8)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.85, pad=0.01, aspect=30)
    bar.set_label(f"final {s['metric']} (%)", fontsize=8)
    bar.ax.axhline(s["threshold"], color="white", lw=2)
    bar.ax.axhline(s["threshold"], color="black", lw=0.8, ls="--")
    bar.ax.tick_params(labelsize=7)
    handles = [Line2D([], [], ls="none", marker="o", color="0.55", mec="0.3", ms=6, label="completed"),
               Line2D([], [], ls="none", marker="v", color="0.55", mec="black", ms=6,
                      label="early-stopped (number = epochs run), judged at that value"),
               Line2D([], [], ls="none", marker="x", color="tab:red", ms=6, mew=1.3, label="diverged (never trains)"),
               Patch(facecolor=BAND, edgecolor=BAND_EDGE,
                     label=f"window: lowest to highest lr whose mean trains (> {s['threshold']:.0f}%, dashed on the "
                           "colour bar)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=7.5, frameon=False)
    seed_note = f"; {k} seeds stacked in each row" if k > 1 else ""
    fig.suptitle(f"Which learning rates train: final {s['metric']} by lr and depth{seed_note}", fontsize=10)
    return fig


# --- explaining the upper edge -----------------------------------------------------------------------------------

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


def edge_figure(per_layer: pd.DataFrame, picks: pd.DataFrame, keys: list[str], columns: list[str]):
    ncols = len(picks)
    fig, axes = plt.subplots(len(columns), ncols, figsize=(4.2 * ncols, 2.9 * len(columns)), squeeze=False,
                             layout="constrained")
    labels = {"update_ratio": "update ratio ||ΔW|| / ||W|| (log)", "dead_fraction": "dead fraction of units"}
    for j, (_, cell) in enumerate(picks.iterrows()):
        rows = select(per_layer, keys, [cell[k] for k in keys]).sort_values("layer")
        for i, col in enumerate(columns):
            ax = axes[i][j]
            for side, colour, ls, lr in (("inside", BAND_EDGE, "-", cell["lr_inside"]),
                                         ("above", "tab:red", "--", cell["lr_above"])):
                y = rows[f"{col}_{side}"].astype(float).replace([np.inf, -np.inf], np.nan)
                keep = y.notna() & ((y > 0) if col == "update_ratio" else True)
                ax.plot(rows["layer"][keep], y[keep], ls, color=colour, marker="o", ms=3,
                        label=f"lr {fmt_lr(lr)} ({'just inside' if side == 'inside' else 'just above'})")
            if col == "update_ratio":
                ax.set_yscale("log")
            else:
                ax.set_ylim(-0.03, 1.03)
            ax.set_ylabel(labels[col], fontsize=8)
            ax.set_xlabel("layer (0 = first conv; last = classifier)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i == 0:
                ax.legend(fontsize=7, loc="best", framealpha=0.7)
                ax.set_title(f"{context_text(keys, [cell[k] for k in keys])}\nat epoch {int(cell['epoch'])}",
                             fontsize=8.5)
    fig.suptitle("The window's upper edge: the largest lr that trains against the smallest that does not",
                 fontsize=10)
    return fig


def edge_section(report: Report, t: pd.DataFrame, layers: pd.DataFrame, windows: pd.DataFrame,
                 keys: list[str], s: dict) -> None:
    has = [c for c in LAYER_STATS if layers is not None and c in layers and layers[c].notna().any()]
    missing = [c for c in LAYER_STATS if c not in has]
    n_edges = int((windows["high"].notna() & windows["above"].notna()).sum())
    at_top = int((windows["high"].notna() & windows["above"].isna()).sum())
    empty = int(windows["high"].isna().sum())
    intro = (f"**Explaining the upper edge.** {n_edges} of {len(windows)} cells have a window that ends below the "
             f"highest lr tried ({at_top} reach the top of the range, {empty} have none). For each, the largest lr "
             "inside the window (just inside) is set against the smallest lr above it (just above, the first that "
             "fails): per layer, `update_ratio` = ||W_end - W_start|| / ||W_start|| over the epoch and "
             "`dead_fraction` = the share of the layer's units whose ReLU is 0 for every image of a fixed batch of "
             "256 training images (NaN for the classifier), averaged over seeds, at the last epoch both lrs reached "
             "(epoch 1 where one of them stopped or diverged after epoch 1; the `epoch` column says which).")
    if not has:
        report.text(intro + f"\n\nThis sweep's layers table has no {' or '.join(LAYER_STATS)} values (they are "
                    "recorded from issue 14 on): the edges cannot be explained from it.")
        return
    if missing:
        intro += f" This sweep's layers table has no {' or '.join(missing)} values: only {', '.join(has)} is shown."
    if not n_edges:
        report.text(intro)
        return
    per_layer, summary = edge_tables(t, layers, windows, keys, has)
    if not len(summary):
        report.text(intro + " None of those trials has per-layer rows: nothing to compare.")
        return
    words = []
    if "update_ratio" in has:
        ratio = (summary["update_ratio_median_above"] / summary["update_ratio_median_inside"]).replace(
            [np.inf, -np.inf], np.nan).dropna()
        if len(ratio):
            words.append(f"the median layer's update ratio is {ratio.median():.3g} times larger just above the "
                         f"window than just inside (median over {len(ratio)} edges; larger in "
                         f"{int((ratio > 1).sum())} of them)")
    if "dead_fraction" in has:
        both = summary[["dead_fraction_mean_inside", "dead_fraction_mean_above"]].dropna()
        if len(both):
            words.append(f"the mean dead fraction goes from {both['dead_fraction_mean_inside'].mean():.2f} just "
                         f"inside to {both['dead_fraction_mean_above'].mean():.2f} just above (mean over "
                         f"{len(both)} edges; higher above in "
                         f"{int((both['dead_fraction_mean_above'] > both['dead_fraction_mean_inside']).sum())})")
    epoch1 = int(summary["epoch_used"].str.startswith("epoch 1:").sum())
    text = intro + ("\n\nAcross the edges, " + "; ".join(words) + "." if words else "")
    if epoch1:
        text += f" {epoch1} of {len(summary)} edges are compared at epoch 1 (a trial stopped or diverged after it)."
    report.text(text)
    report.table("lr_window_edge_summary", summary,
                 "Upper edges, one row per cell: the lrs just inside and just above, the epoch compared and why, "
                 f"their outcomes and mean {s['metric']} (%), and per-layer update ratio (median, max) and dead "
                 "fraction (mean, max) on each side", min_n=10 ** 9)
    report.table("lr_window_edges", per_layer,
                 "Upper edges per layer: update_ratio and dead_fraction just inside (largest lr that trains) and "
                 "just above (smallest lr that fails), mean over seeds at `epoch`", min_n=10 ** 9)
    picks = representative(summary, keys)
    if len(picks):
        report.figure("lr_window_edges", edge_figure(per_layer, picks, keys, has),
                      "Upper edge, representative cells: per layer, " + " and ".join(has)
                      + " just inside (solid) and just above (dashed) the window")


# --- the report --------------------------------------------------------------------------------------------------

def build(report: Report, tables: dict) -> None:
    trials, epochs, layers = tables["trials"], tables.get("epochs"), tables.get("layers")
    if "lr" not in trials:
        raise ReportError("lr_window: the trials table has no lr column")
    s = judge_settings(report, trials)
    t = judged(trials, epochs, s)
    if not len(t):
        raise ReportError("lr_window: no completed, early-stopped or diverged trial to judge yet")
    keys = cell_keys(t)
    points = lr_points(t, keys, s)
    windows = window_table(points, keys)
    seeds = bool(points["n"].max() > 1 and t["seed"].nunique() > 1)
    rule = threshold_text(s)

    report.text(
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
    notes = caveats(t, trials, points, keys, s)
    if notes:
        report.text("**Caveats (computed from the data).**\n\n" + "\n".join(f"- {n}" for n in notes))

    shown = readable(windows, keys, s)
    min_n = int(points["n"].min())
    report.table("lr_window", shown,
                 f"Trainable lr window per cell (trains = {rule}; best lr = highest mean {s['metric']}, mean ± 95% "
                 "CI over seeds (n); first lr above = the smallest lr tried above the window)", main=True,
                 min_n=min_n)
    report.table("lr_window_long", windows,
                 f"Windows, numbers only (trains = {rule}): low, high and width NaN where nothing trains "
                 "(width_or_zero = 0 there); above/below = the nearest lrs tried outside the window; gaps = lrs "
                 "inside that fail; best_mean/best_ci/best_n over seeds, in %", min_n=min_n)
    report.table("lr_window_points", points,
                 f"Every cell and lr: mean ± 95% CI (ci = half-width) of final {s['metric']} (%) over seeds "
                 f"(diverged at chance, {s['chance']:.1f}%), outcomes, and whether it trains (mean > "
                 f"{s['threshold']:.1f}%)", min_n=min_n)
    if "lr" in t and t["lr"].nunique() > 1:
        report.figure("lr_window_map", map_figure(t, windows, keys, s),
                      f"Which lrs train: one panel per init, BN and optimizer; x = lr, y = depth, colour = final "
                      f"{s['metric']} (0 to 100%); green band = the window (trains = {rule})")

    claims, lines = claim_table(windows, keys)
    if len(claims):
        counts = "; ".join(x for x in (tally(claims, NORMAL), tally(claims, XAVIER)) if x)
        report.text("**What the data say about the claim** (He keeps a wider window as depth grows). He's window "
                    f"width against N(0,1)'s and Xavier's, per cell (none = 0 decades; none is narrower than a "
                    f"window of one lr). Counted over cells: {counts}."
                    "\n\n" + "\n".join(lines))
        report.table("lr_window_claim", claims,
                     "He's window width (decades) against the other inits per cell; he_minus_* = He's width minus "
                     "the other's, none counted as 0", min_n=10 ** 9)
        if seeds:
            per_seed = seed_windows(t, keys)
            paired_widths(report, per_seed, keys)
        else:
            report.text("Each lr is a single draw (one seed per cell and lr): the widths above are single "
                        "measurements, and no test of the differences is possible.")
    trend, lines = depth_trend(windows, keys)
    if len(trend):
        report.text("**Does the window narrow with depth?** Widths in decades at each depth, per init, BN and "
                    "optimizer (none, where nothing trains, counts as narrower than a window of one lr, 0.00):\n\n" + "\n".join(lines))
        report.table("lr_window_depth", trend, "Window width against depth, per init, BN and optimizer", min_n=10 ** 9)
    edge_section(report, t, layers, windows, keys, s)
