"""Statistics tables every study report shares: per-cell mean/CI/n beside the source's figure, paired tests.

A study module calls these with its Report; they write the long CSV (one row
per cell, every number) and the readable wide table, add the "< 3 seeds"
warning, and put the source document's reported value and our delta beside
each cell when reference.json has an entry for it.
"""
from __future__ import annotations

import pandas as pd

from analysis.document import Report, reference
from analysis.stats import cell_stats, format_cell, format_p, paired
from trainables.config import DEFAULTS

FINISHED = ("completed", "diverged")  # trials with a final metric; errored/stopped ones are counted in the header


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"].isin(FINISHED)]


def config_columns(trials: pd.DataFrame) -> list[str]:
    """Config keys (and the `group` label of one-factor-at-a-time sweeps) present in the trials table."""
    cols = [k for k in DEFAULTS if k in trials.columns and k != "seed"]
    return cols + [c for c in ("group",) if c in trials.columns]


def varying_keys(trials: pd.DataFrame, keys: list[str] = ()) -> list[str]:
    """`keys`, then every other config column that varies and is not already fixed by the keys before it.

    So `--grid lr=...` on top of a study's grid adds `lr` to its tables, while
    `init_mode`, which a study's init variants set together with `init`,
    does not.
    """
    kept = [k for k in keys if k in trials.columns]
    for col in config_columns(trials):
        if col in kept or trials[col].nunique(dropna=False) < 2:
            continue
        if not kept or trials.groupby(kept, dropna=False)[col].nunique(dropna=False).max() > 1:
            kept.append(col)
    return kept


def reference_frame(entry) -> pd.DataFrame:
    """The reported figures of a reference.json entry (or study name) as keys + `source` columns."""
    entry = reference(entry) if isinstance(entry, str) else entry
    if not entry or "values" not in entry:
        return pd.DataFrame()
    return pd.DataFrame(entry["values"], columns=[*entry["keys"], "source"])


def beside_source(stats: pd.DataFrame, entry, value: str = "mean") -> pd.DataFrame:
    """`stats` with the source's figure for each cell (`source`) and `delta` = ours - source."""
    ref = reference_frame(entry)
    if not len(ref):
        return stats
    keys = [k for k in ref.columns if k != "source"]
    missing = [k for k in keys if k not in stats.columns]
    if missing:
        raise ValueError(f"reference keys {missing} are not columns of the table ({list(stats.columns)})")
    for k in keys:  # JSON has no int/float distinction; align dtypes so the merge matches
        if pd.api.types.is_numeric_dtype(stats[k]):
            ref[k] = pd.to_numeric(ref[k])
    out = stats.merge(ref, on=keys, how="left")
    out["delta"] = out[value] - out["source"]
    return out


def cell_text(row, digits: int = 1) -> str:
    text = format_cell(row["mean"], row["ci"], row["n"], digits)
    if "source" in row and not pd.isna(row["source"]):
        text += f" [src {row['source']:.{digits}f}, Δ {row['delta']:+.{digits}f}]"
    return text


def stat_table(report: Report, name: str, trials: pd.DataFrame, value: str, *, rows: list[str], columns: str,
               caption: str, source=None, scale: float = 1.0, digits: int = 1, main: bool = False) -> pd.DataFrame:
    """Mean ± 95% CI (n) of `value` per cell over seeds, `rows` x `columns`, beside the source's figure.

    Writes `<name>` (the readable wide table) and `<name>_long` (one row per
    cell with mean, ci, ci_low, ci_high, std, n, source, delta). Returns the long frame.
    """
    keys = [*rows, columns]
    data = finished(trials).assign(_value=lambda d: d[value] * scale)
    stats = cell_stats(data, keys, "_value")
    if source is not None:
        stats = beside_source(stats, source)
        entry = reference(source) if isinstance(source, str) else source
        if entry.get("values"):
            report.text(f"Source figures beside ours: {entry.get('source', '?')}; section "
                        f"\"{entry.get('section', '?')}\"; {entry.get('table', 'table not named')}.")
    wide = stats.assign(cell=stats.apply(cell_text, axis=1, digits=digits))
    wide = wide.pivot(index=rows, columns=columns, values="cell")
    wide.columns = [f"{columns} {c}" for c in wide.columns]
    has_source = "source" in stats and stats["source"].notna().any()
    legend = "mean ± 95% CI half-width (n seeds)" + (" [source's value, our delta]" if has_source else "")
    report.table(name, wide.reset_index().fillna("-"), f"{caption}: {legend}", main=main,
                 min_n=int(stats["n"].min()) if len(stats) else 0)
    report.table(f"{name}_long", stats, f"{caption}: one row per cell (CSV has every column)")
    return stats


def paired_table(report: Report, name: str, trials: pd.DataFrame, value: str, *, factor: str, a, b,
                 keys: list[str], caption: str, scale: float = 1.0) -> pd.DataFrame:
    """Paired t test of factor=a vs factor=b at each cell of the other `keys`, paired by seed.

    Writes the table and one plain-words statement per cell; returns the frame.
    Nothing is written when the sweep lacks one of the two arms.
    """
    data = finished(trials).assign(_value=lambda d: d[value] * scale)
    if not {a, b} <= set(data[factor].unique()):
        return pd.DataFrame()
    by = [k for k in keys if k != factor]
    res = paired(data, factor, a, b, "_value", pair_on=["seed"], by=by)
    if not len(res):
        return res
    tested = int(res["p"].notna().sum())
    lines = [f"- {', '.join(f'{k}={v}' for k, v in zip(by, r[by]))}: {r['statement']}"
             + (f" (Holm-adjusted over {tested} cells: {format_p(r['p_holm'])})" if tested > 1 and pd.notna(r["p"]) else "")
             for _, r in res.iterrows()]
    report.text(f"**{caption}**\n\n" + "\n".join(lines))
    holm_note = f"p_holm = p adjusted for the {tested} cells tested here (Holm), " if tested > 1 else ""
    report.table(name, res, f"{caption}: the numbers (diff = {a} - {b}, ci = 95% t half-width, p per cell, "
                 f"{holm_note}d_z = diff / sd of the paired differences)", min_n=int(res["n"].min()))
    return res
