"""`python -m analysis.report --compare A B`: two sweeps side by side, e.g. one grid before and after a code change.

Cells are matched on the config keys that vary within either sweep (the
grid), so the same grid run twice lines up cell by cell even when a fixed
setting or the code version differs; such fixed differences are listed in
the header, and so are differences between the two sweeps' recorded
environments (analysis/environment.py). Per cell: mean ± 95% t CI (n) of the metric in A and in B, the
difference B - A with its Welch-Satterthwaite CI and Welch's t-test p-value
(the two sweeps share no trials, so the test is unpaired).

The page goes to `<A>/report/compare-<name of B>/report.html` (beside its
CSV and PNG), or to `--out DIR`: it is about A's grid, so it sits with A's
report, and comparing A with several B's keeps one folder per B.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.plots import colours
from analysis.document import Report, ReportError, sweep_header, sweep_record
from analysis.environment import compare_environments
from analysis.results import load
from analysis.stats import cell_stats, describe_difference, format_cell, welch
from analysis.tables import config_columns, finished, fmt, varying_keys


def join_keys(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    """Config keys varying within A or within B and present in both (collinear ones dropped)."""
    shared = [c for c in config_columns(a) if c in b.columns]
    both = pd.concat([a[shared], b[shared]], ignore_index=True)
    within = set(varying_keys(a[shared])) | set(varying_keys(b[shared]))
    return varying_keys(both[[c for c in shared if c in within]]) if within else []


def fixed_differences(a: pd.DataFrame, b: pd.DataFrame, keys: list[str]) -> list[str]:
    out = []
    for col in [c for c in config_columns(a) if c in b.columns and c not in keys]:
        va, vb = sorted(map(str, a[col].unique())), sorted(map(str, b[col].unique()))
        if va != vb:
            out.append(f"{col}: A {', '.join(va)}; B {', '.join(vb)}")
    return out


def compare_frame(a: pd.DataFrame, b: pd.DataFrame, keys: list[str], value: str, scale: float) -> pd.DataFrame:
    """One row per cell present in either sweep: A and B statistics, B - A with CI and Welch p."""
    a, b = (finished(t).assign(_v=lambda d: d[value] * scale) for t in (a, b))
    sa, sb = (cell_stats(t, keys, "_v") if keys else cell_stats(t.assign(_all="all"), ["_all"], "_v")
              for t in (a, b))
    on = keys or ["_all"]
    out = sa.merge(sb, on=on, how="outer", suffixes=("_A", "_B"))
    rows = []
    for _, r in out.iterrows():
        mask_a = np.logical_and.reduce([a[k] == r[k] for k in keys]) if keys else np.ones(len(a), bool)
        mask_b = np.logical_and.reduce([b[k] == r[k] for k in keys]) if keys else np.ones(len(b), bool)
        rows.append(welch(a.loc[mask_a, "_v"], b.loc[mask_b, "_v"]))
    out[["diff", "diff_ci", "p"]] = pd.DataFrame(rows, index=out.index, columns=["diff", "diff_ci", "p"])
    return out.drop(columns=[c for c in ("_all",) if c in out])


def compare(path_a: str, path_b: str, metric: str = "test_acc", out: str | None = None) -> Report:
    ta, tb = load(path_a)["trials"], load(path_b)["trials"]
    for path, t in ((path_a, ta), (path_b, tb)):
        if not len(t):
            raise ReportError(f"{path} holds no trials yet")
        if metric not in t.columns:
            raise ReportError(f"{path} has no column {metric!r} in its trials table")
    name_a, name_b = ta["sweep"].iloc[0], tb["sweep"].iloc[0]
    outdir = Path(out) if out else Path(path_a) / "report" / f"compare-{name_b}"
    outdir.mkdir(parents=True, exist_ok=True)
    pct = metric.endswith("_acc")
    scale, unit = (100.0, "points") if pct else (1.0, "units")

    report = Report(outdir, {"A": ta, "B": tb}, title=f"Compare A = {name_a} with B = {name_b} ({metric})")
    info_a, info_b = sweep_record(path_a), sweep_record(path_b)
    for label, path, t, info in (("A", path_a, ta, info_a), ("B", path_b, tb, info_b)):
        report.header.update({f"{label}: {k}": v for k, v in sweep_header(path, t, info).items()})
    # numbers can move with torch, cuDNN or the CPU's vector unit as well as with the code
    report.header["environment, A vs B"] = compare_environments(info_a, info_b, ta, tb)
    keys = join_keys(ta, tb)
    report.header["matched on"] = ", ".join(keys) or "nothing varies: one cell per sweep"
    report.caveats = [f"Fixed settings differ: {d}" for d in fixed_differences(ta, tb, keys)]

    res = compare_frame(ta, tb, keys, metric, scale)
    fewest = int(pd.concat([res["n_A"], res["n_B"]]).fillna(0).min())  # a cell missing from one sweep counts 0
    view = res[keys].copy() if keys else pd.DataFrame(index=res.index)
    view["A"] = [format_cell(m, c, n) for m, c, n in zip(res["mean_A"], res["ci_A"], res["n_A"].fillna(0))]
    view["B"] = [format_cell(m, c, n) for m, c, n in zip(res["mean_B"], res["ci_B"], res["n_B"].fillna(0))]
    view["B - A"] = ["only in B" if pd.isna(na) else "only in A" if pd.isna(nb) else
                     describe_difference("B", "A", d, c, int(min(na, nb)), p, "Welch t", unit=unit, word="higher")
                     for d, c, na, nb, p in zip(res["diff"], res["diff_ci"], res["n_A"], res["n_B"], res["p"])]
    report.section("Comparison")
    report.findings(compare_findings(res, unit))
    report.table("compare", view, f"{metric} in A and B",
                 "Mean ± 95% CI (n seeds) per cell; B - A: the difference in words.", main=True, min_n=fewest)
    report.table("compare_long", res, f"{metric}{' (%)' if pct else ''} per cell, numbers",
                 "B - A with its 95% Welch CI and p.", min_n=fewest)
    report.figure("compare", dot_plot(res, keys, f"{metric}{' (%)' if pct else ''}", name_a, name_b),
                  f"{metric} per cell, A vs B", "Error bars: 95% CI.", main=True)
    report.write()
    return report


def compare_findings(res: pd.DataFrame, unit: str) -> str:
    """How many matched cells moved up or down from A to B, and by how much at most."""
    both = res.dropna(subset=["diff"])
    if not len(both):
        return "No cell ran in both sweeps: nothing to compare."
    up, down = int((both["diff"] > 0).sum()), int((both["diff"] < 0).sum())
    significant = int((both["p"] < 0.05).sum())
    largest = both.loc[both["diff"].abs().idxmax(), "diff"]
    return (f"B is higher than A in {up} and lower in {down} of {len(both)} cells that ran in both "
            f"({significant} with Welch p < 0.05); the largest difference is {largest:+.1f} {unit}.")


def dot_plot(res: pd.DataFrame, keys: list[str], ylabel: str, name_a: str, name_b: str):
    labels = [", ".join(f"{k}={fmt(r[k])}" for k in keys) or "all" for _, r in res.iterrows()]
    x = np.arange(len(res))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(res) + 2), 4.2))
    palette = colours(["A", "B"])
    for side, shift, name in (("A", -0.12, name_a), ("B", 0.12, name_b)):
        ax.errorbar(x + shift, res[f"mean_{side}"], yerr=res[f"ci_{side}"].fillna(0), fmt="o", capsize=3,
                    color=palette[side], label=f"{side} = {name}")
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlabel("cell (" + ", ".join(keys) + ")" if keys else "")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Mean over seeds per cell, A vs B")
    fig.tight_layout()
    return fig
