"""lr_window's drawings: the trainability map (lr against depth, one panel per init, BN and optimizer) and the
per-layer statistics at the window's upper edge. They draw the frames compute.py makes."""
from __future__ import annotations

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

from analysis.lr_window.compute import init_order, select  # noqa: E402
from analysis.lr_window.text import context_text, fmt_lr, key_text  # noqa: E402

BAND = "#dcf0d5"  # the window's band in the map
BAND_EDGE = "#1b7837"


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
