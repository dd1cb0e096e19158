"""Figure helpers shared by every study: panels of lines with one colour per value."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors


def colours(values) -> dict:
    """A stable colour per value (sorted), so a depth or an init keeps its colour in every figure."""
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted(pd.unique(pd.Series(list(values)))))}


def panel_lines(df: pd.DataFrame, panel: list[str], line: str, x: str, y: str, *, ylabel: str, xlabel: str,
                title: str, logy: bool = False, style: str | None = None, style_values: dict | None = None,
                palette: dict | None = None):
    """One panel per combination of `panel` columns, one line per `line` value (mean over the rest).

    `style` splits each line further by a column drawn with different line styles,
    e.g. train (dashed) vs validation (solid), or first vs last epoch.
    `palette` maps line values to colours (default: `colours`), e.g. a sequential map for epochs.
    """
    groups = list(df.groupby(panel, sort=True)) if panel else [((), df)]
    ncols = min(len(groups), 2 if len(groups) == 4 else 3)
    nrows = -(-len(groups) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False, sharey=True)
    palette = palette or colours(df[line])
    for ax, (key, sub) in zip(axes.flat, groups):
        key = key if isinstance(key, tuple) else (key,)
        for (value, sty), part in sub.groupby([line, style] if style else [line, line], sort=True):
            mean = part.groupby(x)[y].mean()
            ls = (style_values or {}).get(sty, "-") if style else "-"
            label = f"{line}={value}" + (f" ({sty})" if style else "")
            ax.plot(mean.index, mean.values, ls, color=palette[value], marker="o", ms=3, label=label)
        ax.set_title(", ".join(f"{k}={v}" for k, v in zip(panel, key)) if panel else title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
