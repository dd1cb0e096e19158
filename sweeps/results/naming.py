"""Which keys tell trials apart, and how a trial is named by them: the one definition that the --dry-run
listing, the live console, `python -m analysis.status`, the trackers' run names and the report's tables share.

    name_keys(plan)          (labels, config keys) that name the planned trials: each label that varies, then
                             each config key that varies unless the keys already shown determine it
    title(values, keys)      "depth=5 init=he_normal lr=0.01"
    varying_keys(trials)     the report tables' keys: the same rule over a trials table, seeds left to the cells

A key that the keys before it determine is left out, so a variant's bundle shows as its label (or its
leading key) while the names stay unique: depth_grid's init=he_normal brings init_mode=fan_out, and
init_mode would say nothing more. Plain Python and pandas only: no torch, no Ray.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

import pandas as pd

from trainables.defaults import DEFAULTS

ORDER = {key: i for i, key in enumerate(DEFAULTS)}  # config keys read in the one table's order
LABELS_WITHOUT_A_PLAN = ("group", "sample")  # the label columns a trials table has when no plan names them
_MISSING = object()  # None, NaN and NA are one value, as pandas' groupby(dropna=False) counts them


# --- the rule ---------------------------------------------------------------------------------------

def name_keys(plan: Iterable[Mapping], always: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(labels, config keys) that tell the planned trials apart. `plan` is sweep.json's: one
    {"config": {...}, "labels": {...}} per trial, with the overrides or the resolved config (a key a trial
    leaves out counts as a value of its own). `always`: keys shown whether or not they vary here (the
    sampled keys, which a searcher or PBT changes at run time).

    Every label that varies is shown; a config key that varies is shown unless the labels and keys already
    shown determine it. Keys every trial sets, and with more values, are tried first: they are the ones
    that imply. Labels come in the plan's order, config keys in DEFAULTS order."""
    plan = list(plan)
    label_names = list(dict.fromkeys(k for entry in plan for k in entry.get("labels", {})))
    config_names = list(dict.fromkeys(k for entry in plan for k in entry.get("config", {})))
    labels = {k: [entry.get("labels", {}).get(k) for entry in plan] for k in label_names}
    configs = {k: [entry.get("config", {}).get(k) for entry in plan] for k in config_names}
    every = {k for k in config_names if all(k in entry.get("config", {}) for entry in plan)}
    return _name_keys(labels, configs, every, always)


def title_keys(trials: pd.DataFrame, labels: Sequence[str] | None = None, always: Iterable[str] = ()) -> list[str]:
    """name_keys over a trials table (one row per trial, config keys and labels as columns), labels first.
    `labels`: the label columns (sweep.json's plan names them); None: LABELS_WITHOUT_A_PLAN. `always`: as
    name_keys' (the sampled keys in sweep.json's search), so the table titles trials as the live view did."""
    if not len(trials):
        return []
    names = LABELS_WITHOUT_A_PLAN if labels is None else labels
    label_cols = {k: trials[k].tolist() for k in names if k in trials.columns}
    config_cols = {k: trials[k].tolist() for k in DEFAULTS if k in trials.columns and k not in label_cols}
    shown_labels, keys = _name_keys(label_cols, config_cols, set(config_cols), always)
    return shown_labels + [k for k in keys if k in trials.columns]


def _name_keys(labels: dict[str, list], configs: dict[str, list], every: set[str],
               always: Iterable[str]) -> tuple[list[str], list[str]]:
    labels = {k: _cells(v) for k, v in labels.items()}
    configs = {k: _cells(v) for k, v in configs.items()}
    shown_labels = [k for k, col in labels.items() if len(set(col)) > 1]
    always = list(always)
    # a sampled key is shown anyway, but must not stand in for the grid: its values differ in every trial,
    # so it alone would "determine" init and depth and hide them (the titles read "sample=3 lr=0.94")
    varied = [k for k, col in configs.items() if len(set(col)) > 1 and k not in always]
    tried_first = sorted(varied, key=lambda k: (k not in every, -len(set(configs[k])), _rank(k)))
    keys = _undetermined([configs[k] for k in tried_first], tried_first, [labels[k] for k in shown_labels])
    return shown_labels, sorted(set(keys) | set(always), key=_rank)


def varying_keys(trials: pd.DataFrame, keys: Sequence[str] = ()) -> list[str]:
    """`keys`, then every other config column that varies and is not already fixed by the keys before it.

    So `--grid lr=...` on top of a study's grid adds `lr` to its tables, while `init_mode`, which a study's
    init variants set together with `init`, does not. The report's tables pool seeds into a cell, so
    `seed` is not a candidate here. (analysis.tables re-exports this for the reports.)"""
    kept = [k for k in keys if k in trials.columns]
    candidates = [c for c in config_columns(trials) if c not in kept]
    columns = [_cells(trials[c].tolist()) for c in candidates]
    varied = [(c, col) for c, col in zip(candidates, columns) if len(set(col)) > 1]
    return kept + _undetermined([col for _, col in varied], [c for c, _ in varied],
                                [_cells(trials[k].tolist()) for k in kept])


def config_columns(trials: pd.DataFrame) -> list[str]:
    """Config keys (and the `group` label of one-factor-at-a-time sweeps) present in the trials table."""
    cols = [k for k in DEFAULTS if k in trials.columns and k != "seed"]
    return cols + [c for c in ("group",) if c in trials.columns]


def differing(mappings: Sequence[Mapping]) -> list[str]:
    """The keys whose values are not all the same across `mappings`, in first-seen order; none determine
    another here (what a user must fix, e.g. for --search optuna, is every key that varies)."""
    names = dict.fromkeys(k for m in mappings for k in m)
    return [k for k in names if len(set(_cells([m.get(k) for m in mappings]))) > 1]


def _undetermined(columns: list[list], names: list[str], shown: list[list]) -> list[str]:
    """The names, in order, whose column the shown columns and the ones kept before it do not determine."""
    kept = []
    shown = list(shown)
    for name, col in zip(names, columns):
        combos = list(zip(*shown)) if shown else [()] * len(col)
        if len(set(zip(combos, col))) > len(set(combos)):
            kept.append(name)
            shown.append(col)
    return kept


def _cells(values: Iterable) -> list:
    """Comparable cells: a null is one value, a list or dict compares by its JSON text."""
    return [_cell(v) for v in values]


def _cell(value):
    try:
        hash(value)
    except TypeError:
        return json.dumps(value, sort_keys=True, default=str)
    try:
        missing = value is None or bool(value != value)  # NaN and NaT are not equal to themselves
    except (TypeError, ValueError):  # pandas' NA refuses bool()
        missing = True
    return _MISSING if missing else value


def _rank(key: str) -> tuple:
    return (ORDER.get(key, len(ORDER)), key)


# --- the names --------------------------------------------------------------------------------------

def title(values: Mapping, keys: Iterable[str], show=None) -> str:
    """`depth=5 init=normal lr=0.01`: the keys present in `values` (a dict or a pandas row), `show`n by
    fmt() unless told otherwise; "" when none is present."""
    show = show or fmt
    present = values.index if isinstance(values, pd.Series) else values
    return " ".join(f"{k}={show(values[k])}" for k in keys if k in present)


def fmt(value) -> str:
    """Short: a float to 4 significant digits, a whole one without its point (the console, status, reports)."""
    if isinstance(value, float):
        return f"{value:.4g}" if not value.is_integer() or abs(value) >= 1e6 else str(int(value))
    return str(value)


def listed(value) -> str:
    """As the user wrote it (lr_scale=1.0, weight_decay=0.0001), a float with more digits (a random draw) to
    4 significant digits: the --dry-run listing."""
    if isinstance(value, float) and float(f"{value:.4g}") != value:
        return f"{value:.4g}"
    return str(value)
