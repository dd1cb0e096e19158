"""How a search-space file declares its trials.

A study is a `Sweep`: the values it fixes, and a grid built from three pieces:

    axis("depth", [2, 5, 10, 12])              one config key, several values
    variants("init", he=dict(...), n01=dict(...))   named bundles of keys that move together
    cross(a, b, ...)                           every combination (the usual grid)
    union(weight_decay=g1, lr_speedup=g2)      one-factor-at-a-time groups, labelled `group`

Expanding a grid gives (config overrides, labels) pairs. Labels name the variant
or group a point came from; those not named after a config key become columns.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from trainables.config import ConfigError, check_keys

Point = tuple[dict, dict]  # (config overrides, labels)


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple

    def points(self) -> list[Point]:
        return [({self.key: v}, {}) for v in self.values]

    def keys(self) -> set[str]:
        return {self.key}

    def axis_keys(self) -> set[str]:
        return {self.key}


@dataclass(frozen=True)
class Variants:
    name: str
    options: tuple[tuple[str, dict], ...]

    def points(self) -> list[Point]:
        return [(dict(opts), {self.name: lab}) for lab, opts in self.options]

    def keys(self) -> set[str]:
        return {k for _, opts in self.options for k in opts}

    def axis_keys(self) -> set[str]:
        return set()


@dataclass(frozen=True)
class Cross:
    parts: tuple

    def points(self) -> list[Point]:
        out = []
        for combo in itertools.product(*(p.points() for p in self.parts)):
            config, labels = {}, {}
            for c, lab in combo:
                config.update(c)
                labels.update(lab)
            out.append((config, labels))
        return out

    def keys(self) -> set[str]:
        return set().union(*(p.keys() for p in self.parts))

    def axis_keys(self) -> set[str]:
        return set().union(*(p.axis_keys() for p in self.parts))


@dataclass(frozen=True)
class Union:
    groups: tuple[tuple[str, object], ...]

    def points(self) -> list[Point]:
        return [(c, {**lab, "group": name}) for name, grid in self.groups for c, lab in grid.points()]

    def keys(self) -> set[str]:
        return set().union(*(g.keys() for _, g in self.groups))

    def axis_keys(self) -> set[str]:
        return set().union(*(g.axis_keys() for _, g in self.groups))


def axis(key: str, values) -> Axis:
    check_keys([key], "grid")
    values = tuple(values)
    if not values:
        raise ConfigError(f'grid axis "{key}" has no values')
    return Axis(key, values)


def variants(name: str, **options: dict) -> Variants:
    for opts in options.values():
        check_keys(opts, f'variant "{name}"')
    return Variants(name, tuple(options.items()))


def cross(*parts) -> Cross:
    return Cross(tuple(parts))


def union(**groups) -> Union:
    return Union(tuple(groups.items()))


@dataclass
class Sweep:
    """One study: what it fixes, what it varies, and how its smoke run shrinks it."""
    study: str                   # which analysis report applies (analysis.report.STUDIES)
    fixed: dict
    grid: object                 # Axis | Variants | Cross | Union
    smoke_grid: object = None    # a small slice of `grid` for --smoke (default: the whole grid)
    smoke: dict = field(default_factory=lambda: dict(epochs=1, train_subset=384, test_subset=256))
    description: str = ""
    flags: dict = field(default_factory=dict)  # this study's defaults for command-line flags, e.g. scheduler="asha"

    def __post_init__(self):
        check_keys(self.fixed, "fixed")
        check_keys(self.smoke, "smoke")


def replace_axis(grid, key: str, values) -> object:
    """`grid` with the axis `key` set to `values` everywhere it appears, or crossed in if absent.
    values=None removes the axis instead (a sampled distribution takes the key's place)."""
    def walk(node):
        if isinstance(node, Axis):
            if node.key != key:
                return node, False
            return (axis(key, values) if values is not None else Cross(())), True
        if isinstance(node, Cross):
            parts = [walk(p) for p in node.parts]
            return Cross(tuple(p for p, _ in parts)), any(hit for _, hit in parts)
        if isinstance(node, Union):
            groups = [(name, walk(g)) for name, g in node.groups]
            return Union(tuple((name, g) for name, (g, _) in groups)), any(hit for _, (_, hit) in groups)
        return node, False

    new, hit = walk(grid)
    if not hit and key in grid.keys():
        raise ConfigError(f'--grid {key}=...: "{key}" is set inside a variant of this sweep; '
                          f"use --set {key}=... to fix it instead")
    if values is None:
        return new
    return new if hit else cross(grid, axis(key, values))
