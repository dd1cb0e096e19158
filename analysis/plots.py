"""Figure helpers shared by every study: panels of lines with one colour per value."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from sweeps.results.progress import fmt  # noqa: E402

PALETTE = plt.get_cmap("tab10").colors


def named_colour(value):
    """The fixed colour of a registered init or activation name (registry order), else None.

    An init or activation is drawn in the same colour in every figure of every
    report, whichever other names share the figure.
    """
    from trainables.activations import ACTIVATIONS  # lazy: torch is only needed for these names
    from trainables.inits import INITS
    for registry in (INITS, ACTIVATIONS):
        if isinstance(value, str) and value in registry:
            return PALETTE[list(registry).index(value) % len(PALETTE)]
    return None


def colours(values) -> dict:
    """A stable colour per value: fixed for init/activation names, else by sorted position (depths, ...)."""
    unique = sorted(pd.unique(pd.Series(list(values))))
    named = {v: named_colour(v) for v in unique}
    if all(c is not None for c in named.values()):
        return named
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(unique)}


def errorbar_lines(stats: pd.DataFrame, x: str, colour: str, *, ylabel: str, xlabel: str, title: str,
                   style: str | None = None, reference: str | None = None):
    """Cell means with 95% CI error bars against `x`, one colour per `colour` value, line style per `style`.

    `stats` has mean, ci (NaN for n=1: no bar) and optionally a `reference`
    column drawn as hollow markers (the source document's figure).
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    palette = colours(stats[colour])
    styles = {v: ls for v, ls in zip(sorted(stats[style].unique()), ("-", "--", ":", "-."))} if style else {}
    for key, part in stats.groupby([colour, style] if style else [colour], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        part = part.sort_values(x)
        label = " + ".join(map(str, key))
        ax.errorbar(part[x], part["mean"], yerr=part["ci"].fillna(0), color=palette[key[0]], capsize=3,
                    ls=styles.get(key[-1], "-") if style else "-", marker="o", ms=4, label=label)
        if reference and reference in part and part[reference].notna().any():
            ax.plot(part[x], part[reference], ls="none", marker="s", mfc="none", color=palette[key[0]],
                    label=f"{label} (source)")
    if pd.api.types.is_numeric_dtype(stats[x]):
        ax.set_xticks(sorted(stats[x].unique()))  # the grid's values, not fractional ticks between them
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


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
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False, sharey=True)
    palette = palette or colours(df[line])
    for ax, (key, sub) in zip(axes.flat, groups):
        key = key if isinstance(key, tuple) else (key,)
        for (value, sty), part in sub.groupby([line, style] if style else [line, line], sort=True):
            mean = part.groupby(x)[y].mean()
            ls = (style_values or {}).get(sty, "-") if style else "-"
            label = f"{line}={value}" + (f" ({sty})" if style else "")
            ax.plot(mean.index, mean.values, ls, color=palette[value], marker="o", ms=3, label=label)
        if panel:  # a single panel carries the figure title only once, as the suptitle
            ax.set_title(", ".join(f"{k}={fmt(v)}" for k, v in zip(panel, key)))
        if pd.api.types.is_integer_dtype(df[x]):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and layers: no 1.2, 1.4 ticks
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best", framealpha=0.7)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
