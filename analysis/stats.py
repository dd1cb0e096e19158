"""Statistics over seeds: per-cell mean with a 95% confidence interval, and paired/Welch tests.

Choices (also in the README's "Reports" section):
- The interval is Student t: mean ± t(0.975, n-1) · s/√n. With the 2-10 seeds
  a sweep can afford, a bootstrap interval is too narrow (it resamples from
  a handful of values and ignores the uncertainty of s), while t is exact for
  normal noise and conservative enough for seed-to-seed noise in accuracy.
- A cell with n = 1 has no interval: its CI columns are NaN and its text says
  "n=1, no CI" rather than showing ± 0.
- Headline comparisons (He vs N(0,1) at each depth, ReLU vs PReLU, ...) are
  paired by seed and by every other key: both arms of a pair share the seed
  and thus the data split and batch order. The test is scipy's paired t
  (`ttest_rel`); the effect size is Cohen's d_z = mean difference / sd of
  the differences.
- Two different sweeps (`--compare`) do not share trials, so their cells are
  compared with Welch's t (`ttest_ind(equal_var=False)`), which does not
  assume equal variances.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

CONFIDENCE = 0.95
MIN_SEEDS = 3  # below this, a spread is mostly noise: tables say so


def t_interval(values) -> tuple[float, float, int]:
    """(mean, half-width of the 95% Student-t interval, n); half-width NaN when n < 2."""
    x = np.asarray(pd.Series(values).dropna(), dtype=float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, n
    sem = float(sps.sem(x))
    if sem == 0:
        return mean, 0.0, n
    low, _ = sps.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sem)
    return mean, mean - float(low), n


def cell_stats(df: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """One row per cell of `keys`: mean, ci (half-width), ci_low, ci_high, std and n of `value`."""
    rows = []
    for key, part in df.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        mean, half, n = t_interval(part[value])
        std = float(part[value].std()) if n > 1 else math.nan
        rows.append({**dict(zip(keys, key)), "mean": mean, "ci": half,
                     "ci_low": mean - half, "ci_high": mean + half, "std": std, "n": n})
    return pd.DataFrame(rows, columns=[*keys, "mean", "ci", "ci_low", "ci_high", "std", "n"])


def format_cell(mean: float, ci: float, n: int, digits: int = 1) -> str:
    """'55.8 ± 1.2 (n=3)'; 'n=1, no CI' for a single run; '-' for an empty cell."""
    if pd.isna(n) or not n or pd.isna(mean):
        return "-"
    n = int(n)
    if n == 1 or pd.isna(ci):
        return f"{mean:.{digits}f} (n=1, no CI)"
    return f"{mean:.{digits}f} ± {ci:.{digits}f} (n={n})"


def seed_warning(n_values, what: str = "This table") -> str:
    """A sentence when the smallest cell rests on fewer than MIN_SEEDS seeds, else ''."""
    n = pd.Series(list(n_values)).dropna()
    if not len(n) or n.min() >= MIN_SEEDS:
        return ""
    return (f"{what} rests on as few as {int(n.min())} seed(s) per cell: fewer than {MIN_SEEDS}, "
            "so intervals are wide or missing and differences may be noise.")


def paired(df: pd.DataFrame, factor: str, a, b, value: str, pair_on: list[str], by: list[str]) -> pd.DataFrame:
    """Paired t test of `value` between factor=a and factor=b, one row per cell of `by`.

    Rows are paired on `pair_on` (the seed and any key that is neither `factor`
    nor in `by`); unpaired rows are dropped. Columns: the `by` keys, n (pairs),
    diff (mean of a - b), ci (95% t half-width of the difference), p, d_z, and
    `statement`, the result in plain words.
    """
    rows = []
    sub = df[df[factor].isin([a, b])]
    for key, part in (sub.groupby(by, sort=True) if by else [((), sub)]):
        key = key if isinstance(key, tuple) else (key,)
        wide = part.pivot_table(index=pair_on, columns=factor, values=value, aggfunc="mean")
        wide = wide.dropna(subset=[c for c in (a, b) if c in wide.columns])
        if a not in wide.columns or b not in wide.columns:
            continue
        diff = wide[a] - wide[b]
        mean, half, n = t_interval(diff)
        p = d_z = math.nan
        if n >= 2:
            sd = float(diff.std())
            if sd > 1e-9 * max(1.0, abs(mean)):  # identical differences: no spread, no t statistic
                p = float(sps.ttest_rel(wide[a], wide[b]).pvalue)
                d_z = mean / sd
        rows.append({**dict(zip(by, key)), "n": n, "diff": mean, "ci": half, "p": p, "d_z": d_z,
                     "statement": describe_difference(str(a), str(b), mean, half, n, p, "paired t", d_z)})
    out = pd.DataFrame(rows, columns=[*by, "n", "diff", "ci", "p", "d_z", "statement"])
    # One table tests the same question in every cell, so a lone p < 0.05 among many cells is weak
    # evidence; Holm's step-down adjustment controls the chance of any false positive in the table.
    out.insert(out.columns.get_loc("p") + 1, "p_holm", holm(out["p"]))
    return out


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order; NaN p-values stay NaN and are not counted."""
    p = pd.Series(list(p_values), dtype=float)
    tested = p.dropna().sort_values()
    m = len(tested)
    adjusted = (tested * np.arange(m, 0, -1)).cummax().clip(upper=1.0)
    return p.where(p.isna(), adjusted).tolist()


def welch(a_values, b_values) -> tuple[float, float, float]:
    """(mean b - a, 95% CI half-width, p) of Welch's unequal-variance t test.

    The half-width comes from scipy's Welch-Satterthwaite interval; CI and p
    are NaN when either side has fewer than 2 values or both have no spread.
    """
    a = pd.Series(list(a_values), dtype=float).dropna()
    b = pd.Series(list(b_values), dtype=float).dropna()
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return diff, math.nan, math.nan
    res = sps.ttest_ind(b, a, equal_var=False)
    low, _ = res.confidence_interval(CONFIDENCE)
    return diff, diff - float(low), float(res.pvalue)


def format_p(p: float) -> str:
    if pd.isna(p):
        return "n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def describe_difference(a: str, b: str, diff: float, ci: float, n: int, p: float, test: str,
                        d_z: float = math.nan, unit: str = "points", word: str = "better") -> str:
    """'he_normal better than normal by 12.3 ± 1.1 points (95% CI), 5 seeds, paired t p=0.002, d_z=4.1'."""
    if not n or pd.isna(diff):
        return f"{a} vs {b}: no pairs."
    winner, loser = (a, b) if diff >= 0 else (b, a)
    size = f"{abs(diff):.1f}" + (f" ± {ci:.1f}" if not pd.isna(ci) else "")
    text = f"{winner} {word} than {loser} by {size} {unit}"
    if n < 2:
        return text + " (1 seed: no test possible)."
    text += f" (95% CI), {n} seeds, {test} {format_p(p)}"
    if not pd.isna(d_z):
        text += f", d_z={abs(d_z):.1f}"
    if not pd.isna(p) and p >= 0.05:
        text += ": not significant at 5%"
    return text + "."
