"""What a sweep runs: a Plan of TrialSpecs, built once by the engine's planner and read everywhere after.

    Plan
      trials       TrialSpec per trial, in order; Ray's `trial` config value indexes them
      search       the validated search settings (sweep.json's "search")
      sampled      key -> the distribution it is drawn from (sweeps.engine.space.Sampled)
      sets         the --set values as parsed (the --dry-run listing shows their types)
      picked_keys  the keys a searcher (Optuna) or PBT sets per trial at run time (sweep.json's search_keys)

Both are frozen, and their dicts refuse writes: a spec travels to every trial (Ray pickles it), into every
trials row and into the trackers, so a change made in one place would leave the copies disagreeing. A
change is a new object (dataclasses.replace, Plan.with_facts, TrialSpec.picking).

No torch and no Ray here: the results layer and the console read specs, and the trainable
(trainables/ray_trainable.py) is handed the Plan and calls `for_trial` without importing this module.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sweeps.results import naming


class ReadOnlyDict(dict):
    """A dict that refuses every write after it is made. Still a dict: json, pandas and `**` read it."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a plan is read-only: build a new one (dataclasses.replace) instead of changing it")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self):  # pickle would otherwise refill it item by item, through __setitem__
        return type(self), (dict(self),)


def read_only(mapping: Mapping | None) -> ReadOnlyDict:
    return mapping if isinstance(mapping, ReadOnlyDict) else ReadOnlyDict(mapping or {})


@dataclass(frozen=True)
class TrialSpec:
    """One planned trial.

    config       every key, resolved and validated once (trainables.config.Resolved, which resolve()
                 hands back unchanged, so the trainable does not check it again). Left a plain Resolved:
                 read it, never write it
    overrides    the keys the sweep and the flags set, as sweep.json's plan records them
    labels       variant and group labels (the ones that are not config keys), and `sample`
    facts        the parameter count, then the data facts (n_train, data_source, ...) once data is loaded
    title_keys   the labels and keys that name a trial in this plan (sweeps.results.naming.name_keys)
    """
    config: Mapping[str, Any]
    overrides: Mapping[str, Any]
    labels: Mapping[str, Any] = field(default_factory=ReadOnlyDict)
    facts: Mapping[str, Any] = field(default_factory=ReadOnlyDict)
    title_keys: tuple[str, ...] = ()

    def __post_init__(self):
        for name in ("overrides", "labels", "facts"):
            object.__setattr__(self, name, read_only(getattr(self, name)))
        object.__setattr__(self, "title_keys", tuple(self.title_keys))

    @classmethod
    def of(cls, spec) -> TrialSpec:
        """A TrialSpec, or one made from a dict of its fields (what tests and benchmarks build by hand; a
        `title` there is dropped: the title is derived from title_keys)."""
        if isinstance(spec, TrialSpec):
            return spec
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in spec.items() if k in known})

    @property
    def title(self) -> str:
        """What --dry-run lists: the title keys with their values as the sweep wrote them."""
        return naming.title({**self.config, **self.labels}, self.title_keys, naming.listed) or "default"

    def record(self) -> dict:
        """What must not change between a sweep and its --resume (sweep.json's plan): overrides and labels."""
        return json.loads(json.dumps(dict(config=self.overrides, labels=self.labels), default=str))

    def picking(self, values: Mapping[str, Any]) -> TrialSpec:
        """This trial with the values a searcher or PBT picked for it in force: itself when they are its own
        values, else its overrides with them, resolved (and so validated) again."""
        if all(self.config.get(k) == v for k, v in values.items()):
            return self
        from trainables.config import resolve  # torch: only a trial whose values were picked gets here
        overrides = {**self.overrides, **values}
        return replace(self, config=resolve(overrides), overrides=overrides)


@dataclass(frozen=True)
class Plan:
    """The planned trials and what the sweep searches with. Iterates, indexes and counts as its trials."""
    trials: tuple[TrialSpec, ...]
    search: Mapping[str, Any] = field(default_factory=ReadOnlyDict)
    sampled: Mapping[str, Any] = field(default_factory=ReadOnlyDict)
    sets: Mapping[str, Any] = field(default_factory=ReadOnlyDict)
    picked_keys: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "trials", tuple(TrialSpec.of(t) for t in self.trials))
        for name in ("search", "sampled", "sets"):
            object.__setattr__(self, name, read_only(getattr(self, name)))
        object.__setattr__(self, "picked_keys", tuple(self.picked_keys))

    @classmethod
    def of(cls, trials, picked_keys: Iterable[str] = ()) -> Plan:
        """A Plan, or one made from a list of specs (TrialSpecs or their dicts) with no search settings."""
        return trials if isinstance(trials, Plan) else cls(tuple(trials), picked_keys=tuple(picked_keys))

    def __len__(self) -> int:
        return len(self.trials)

    def __iter__(self):
        return iter(self.trials)

    def __getitem__(self, index: int) -> TrialSpec:
        return self.trials[index]

    @property
    def title_keys(self) -> tuple[str, ...]:
        return self.trials[0].title_keys if self.trials else ()

    def for_trial(self, trial_config: Mapping[str, Any]) -> TrialSpec:
        """The spec of the Ray trial whose config is `trial_config` ({"trial": i} plus what a searcher or PBT
        set): the i-th spec with those values in force. The trainable, the Recorder and reconcile() all ask
        here, so a trial's config is the same wherever it is read."""
        picked = {k: trial_config[k] for k in self.picked_keys if k in trial_config}
        return self.trials[trial_config["trial"]].picking(picked)

    @property
    def inside_cell(self) -> frozenset[str]:
        """The keys that vary inside a grid cell: the sampled ones, the seed, the grid axes searched like a
        sampled key (--search-axis) and the ones PBT perturbs, with the `sample` label. The rest of a trial's
        config is its cell: what a tuned comparison compares (--search-scope cell, --confirm)."""
        search = self.search
        return frozenset({"seed", "sample", *self.sampled, *search.get("search_axes", ()),
                          *search.get("pbt_mutate", ())})

    def cell_of(self, spec: TrialSpec) -> str:
        """The cell a trial belongs to, named by the keys that name trials here less the ones inside a cell
        ("init=he_normal depth=10"; "all" where nothing but those varies). The trials table's `cell`."""
        inside = self.inside_cell
        keys = [k for k in spec.title_keys if k not in inside]
        return naming.title({**spec.config, **spec.labels}, keys, naming.listed) or "all"

    def record(self) -> list[dict]:
        """sweep.json's plan: each trial's overrides and labels, in order."""
        return [spec.record() for spec in self.trials]

    def with_facts(self, facts: Sequence[Mapping[str, Any]]) -> Plan:
        """The same plan with each trial's facts extended by the matching entry of `facts` (the data's)."""
        return replace(self, trials=tuple(replace(spec, facts={**spec.facts, **more})
                                          for spec, more in zip(self.trials, facts, strict=True)))
