"""Statistics tables every study report shares: per-cell mean/CI/n beside the source's figure, paired tests.

A study module calls these with its Report; they write the long CSV (one row
per cell, every number) and the readable wide table, add the "< 3 seeds"
warning, and put the source document's reported value and our delta beside
each cell when reference.json has an entry for it and the cell's trials follow
the source's protocol.

stat_table's cells average completed trials only. A cell's other trials are
named in its text instead of being averaged in (OUTCOMES):

    55.8 ± 1.2 (n=3)                      every trial completed
    55.8 ± 1.2 (n=3) [src 55.8, Δ +0.0]   ... on the source's protocol, beside its figure
    61.0 ± 2.0 (n=2) +1 diverged          a mix: the mean of the completed ones, then the rest
    61.0 (n=1, no CI) +2 early_stopped at epoch 1
    diverged (2 of 2)                     no trial completed: what became of them
    diverged (1 of 3), early_stopped at epochs 1, 3 (2 of 3)
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.document import Report, reference
from analysis.stats import cell_stats, format_cell, format_p, paired
# which keys tell trials apart: in sweeps.results.progress, so the live console view titles trials the same way
from sweeps.results.progress import config_columns, fmt, varying_keys  # noqa: F401 (re-exported)

FINISHED = ("completed", "diverged")  # trials with a final metric; errored/stopped ones are counted in the header
# stat_table: statistics over completed trials; trials with these statuses are counted and named in the cell.
OUTCOMES = ("diverged", "early_stopped", "error", "stopped")
# Protocol keys that depart for a whole run and are stated once, boxed in the page's header, by
# analysis.document.data_caveats (and report.py), instead of cell by cell: the data (real, subset or synthetic
# images, data set, validation split). Every other protocol key (optimizer, lr, batch_size, epochs, ...)
# decides per cell whether the source's figure stands beside ours: a delta against a 10-epoch figure means
# nothing for a 1-epoch smoke cell or an SGD lr-50 one.
RUN_WIDE = ("data_source", "dataset", "val_size")


def finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"].isin(FINISHED)]


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


def cell_protocol(entry, trials: pd.DataFrame) -> dict:
    """The source protocol's keys that decide cell by cell (not RUN_WIDE) and that the trials table holds."""
    entry = reference(entry) if isinstance(entry, str) else (entry or {})
    return {k: v for k, v in (entry.get("protocol") or {}).items() if k not in RUN_WIDE and k in trials.columns}


def follows(values: pd.Series, wanted) -> pd.Series:
    """Which of `values` equal the protocol's `wanted` value (numbers to 1e-9 relative: 1e-3 == 0.001)."""
    number = isinstance(wanted, (int, float)) and not isinstance(wanted, bool)
    if number and pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        x = values.astype(float).to_numpy()
        return pd.Series(np.isclose(x, float(wanted), rtol=1e-9, atol=0.0) & ~np.isnan(x), index=values.index)
    return values.eq(wanted) & values.notna()


def protocol_text(protocol: dict) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in protocol.items())


def outcome_counts(trials: pd.DataFrame, keys: list[str], protocol: dict) -> pd.DataFrame:
    """One row per cell of `keys` over completed trials and OUTCOMES: n_<outcome> for each outcome,
    `stopped_at` (the epochs early-stopped trials ran, e.g. "1, 3") and `on_protocol` (every trial of the
    cell matches every key of `protocol`)."""
    shown = trials[trials["status"].isin(("completed", *OUTCOMES))]
    ok = pd.Series(True, index=shown.index)
    for key, wanted in protocol.items():
        ok &= follows(shown[key], wanted)
    shown = shown.assign(_on=ok)
    rows = []
    for key, part in shown.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(keys, key))
        row["on_protocol"] = bool(part["_on"].all())
        for status in OUTCOMES:
            row[f"n_{status}"] = int((part["status"] == status).sum())
        early = part[part["status"] == "early_stopped"]
        ran = early["epochs_completed"] if "epochs_completed" in early else pd.Series([], dtype=float)
        ran = ran.dropna().astype(int)
        row["stopped_at"] = ", ".join(str(e) for e in sorted(ran.unique()))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*keys, "on_protocol", *(f"n_{s}" for s in OUTCOMES), "stopped_at"])


def outcome_words(status: str, row) -> str:
    """'diverged', or 'early_stopped at epoch 1' / 'early_stopped at epochs 1, 3' (the epochs they ran)."""
    if status == "early_stopped" and str(row.get("stopped_at", "") or ""):
        at = str(row["stopped_at"])
        return f"early_stopped at epoch{'s' if ',' in at else ''} {at}"
    return status


def outcomes_text(row) -> str:
    """The cell's non-completed trials: ' +1 diverged +2 early_stopped at epoch 1' after a mean, or
    'diverged (2 of 3), early_stopped at epoch 1 (1 of 3)' for a cell where no trial completed; '' if none."""
    counts = {s: int(row[f"n_{s}"]) for s in OUTCOMES if f"n_{s}" in row and not pd.isna(row[f"n_{s}"])}
    counts = {s: n for s, n in counts.items() if n}
    if not counts:
        return ""
    n = 0 if pd.isna(row.get("n", 0)) else int(row.get("n", 0))
    if n and not pd.isna(row.get("mean")):
        return "".join(f" +{k} {outcome_words(s, row)}" for s, k in counts.items())
    total = sum(counts.values()) + n
    return ", ".join(f"{outcome_words(s, row)} ({k} of {total})" for s, k in counts.items())


def cell_text(row, digits: int = 1) -> str:
    """'55.8 ± 1.2 (n=3)', then the other outcomes ('+1 diverged'), then '[src 55.8, Δ +0.0]' for a cell on
    the source's protocol; a cell without a completed trial reads e.g. 'diverged (2 of 2)'."""
    others = outcomes_text(row)
    if others and (pd.isna(row.get("n")) or not row.get("n") or pd.isna(row.get("mean"))):
        return others
    text = format_cell(row["mean"], row["ci"], row["n"], digits) + others
    if "source" in row and not pd.isna(row["source"]) and not pd.isna(row["mean"]) and row.get("on_protocol", True):
        text += f" [src {row['source']:.{digits}f}, Δ {row['delta']:+.{digits}f}]"
    return text


def stat_table(report: Report, name: str, trials: pd.DataFrame, value: str, *, rows: list[str], columns: str,
               caption: str, source=None, scale: float = 1.0, digits: int = 1, main: bool = False) -> pd.DataFrame:
    """Mean ± 95% CI (n) of `value` per cell over seeds, `rows` x `columns`, beside the source's figure.

    Statistics are over completed trials; a cell's diverged, early-stopped, errored or stopped trials are
    named in its text (module docstring). The source's figure and our delta stand only beside cells on the
    source's protocol: every trial of the cell matches each key of the reference entry's `protocol` that the
    trials table holds, RUN_WIDE keys aside (the page's header states those).

    Writes `<name>` (the readable wide table) and `<name>_long` (one row per
    cell with mean, ci, ci_low, ci_high, std, n (completed trials), source, delta (both NaN off
    protocol), on_protocol, n_diverged, n_early_stopped, n_error, n_stopped, stopped_at). Returns the long frame.
    """
    keys = [*rows, columns]
    entry = (reference(source) if isinstance(source, str) else source) if source is not None else {}
    protocol = cell_protocol(entry, trials) if entry.get("values") else {}
    data = trials[trials["status"] == "completed"].assign(_value=lambda d: d[value] * scale)
    stats = cell_stats(data, keys, "_value")
    counts = outcome_counts(trials, keys, protocol)
    stats = counts[keys].merge(stats, on=keys, how="left").merge(counts, on=keys, how="left")
    stats["n"] = stats["n"].fillna(0).astype(int)
    if source is not None:
        stats = beside_source(stats, source)
        if "source" in stats:
            stats.loc[~stats["on_protocol"], ["source", "delta"]] = np.nan
        if entry.get("values"):
            report.text(f"Source figures beside ours: {entry.get('source', '?')}; section "
                        f"\"{entry.get('section', '?')}\"; {entry.get('table', 'table not named')}.")
    stats = stats[[c for c in stats.columns if c not in ("on_protocol", *counts.columns[len(keys):])]
                  + list(counts.columns[len(keys):])]  # the pre-existing columns first, as before
    wide = stats.assign(cell=stats.apply(cell_text, axis=1, digits=digits) if len(stats) else "")
    wide = wide.pivot(index=rows, columns=columns, values="cell")
    wide.columns = [f"{columns} {c}" for c in wide.columns]
    has_source = "source" in stats and stats["source"].notna().any()
    legend = "mean ± 95% CI half-width (n seeds)" + (" [source's value, our delta]" if has_source else "")
    if stats[[f"n_{s}" for s in OUTCOMES]].to_numpy().any():
        legend += ("; mean over completed trials only, the others named in the cell: '+1 diverged' beside a mean, "
                   "'diverged (2 of 2)' where none completed, 'early_stopped at epoch k' = stopped by the "
                   "scheduler after k epochs")
    if protocol and "source" in stats:
        off = int((~stats["on_protocol"]).sum())
        legend += (f"; the source's value stands only beside cells on its protocol ({protocol_text(protocol)})"
                   + (f": {off} of {len(stats)} cells are off it and show none" if off else ""))
    ran = stats["n"][stats["n"] > 0]
    min_n = int(ran.min()) if len(ran) else 0
    report.table(name, wide.reset_index().fillna("-"), caption, legend[0].upper() + legend[1:] + ".", main=main,
                 min_n=min_n)
    report.table(f"{name}_long", stats, f"{caption}, numbers", "One row per cell: every column of the statistics.",
                 fold=True, min_n=min_n)
    return stats


def extremes_text(stats: pd.DataFrame, keys: list[str], what: str, digits: int = 1) -> str:
    """'Highest <what>: init=he_normal, depth=5, 45.0 ± 1.2 (n=3); lowest: ... (4 cells).' over the cells of a
    stat_table frame that have a mean: the first thing a reader of the table looks for."""
    shown = stats[stats["n"] > 0].dropna(subset=["mean"])
    if not len(shown):
        return f"No cell has a completed trial: no {what} to compare."

    def words(row) -> str:
        where = ", ".join(f"{k}={fmt(row[k])}" for k in keys)
        return f"{where + ', ' if where else ''}{format_cell(row['mean'], row['ci'], row['n'], digits)}"

    text = f"Highest {what}: {words(shown.loc[shown['mean'].idxmax()])}"
    if len(shown) > 1:
        text += f"; lowest: {words(shown.loc[shown['mean'].idxmin()])}"
    return text + f" ({len(shown)} cell{'s' if len(shown) > 1 else ''})."


def paired_table(report: Report, name: str, trials: pd.DataFrame, value: str, *, factor: str, a, b,
                 keys: list[str], caption: str, scale: float = 1.0) -> pd.DataFrame:
    """Paired t test of factor=a vs factor=b at each cell of the other `keys`, paired by seed.

    Writes one plain-words statement per cell as findings and the numbers as a details table; returns the
    frame. Nothing is written when the sweep lacks one of the two arms.
    """
    data = finished(trials).assign(_value=lambda d: d[value] * scale)
    if not {a, b} <= set(data[factor].unique()):
        return pd.DataFrame()
    by = [k for k in keys if k != factor]
    res = paired(data, factor, a, b, "_value", pair_on=["seed"], by=by)
    if not len(res):
        return res
    tested = int(res["p"].notna().sum())
    lines = [f"- {', '.join(f'{k}={fmt(v)}' for k, v in zip(by, r[by]))}: {r['statement']}"
             + (f" (Holm-adjusted over {tested} cells: {format_p(r['p_holm'])})" if tested > 1 and pd.notna(r["p"]) else "")
             for _, r in res.iterrows()]
    report.findings(f"**{caption}**\n\n" + "\n".join(lines))
    holm_note = f"p_holm = p adjusted for the {tested} cells tested here (Holm), " if tested > 1 else ""
    report.table(name, res, f"{caption}: the numbers", f"diff = {a} - {b}, ci = 95% t half-width, p per cell, "
                 f"{holm_note}d_z = diff / sd of the paired differences.", min_n=int(res["n"].min()))
    return res
