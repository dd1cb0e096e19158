"""How a search-space file declares its trials.

A study is a `Sweep`: the values it fixes, and a grid built from three pieces:

    axis("depth", [2, 5, 10, 12])              one config key, several values
    variants("init", he=dict(...), n01=dict(...))   named bundles of keys that move together
    cross(a, b, ...)                           every combination (the usual grid)
    union(weight_decay=g1, lr_speedup=g2)      one-factor-at-a-time groups, labelled `group`

`--grid NAME=a,b` keeps only the variants a and b of variants(NAME, ...) (`select_variants`).

Expanding a grid gives (config overrides, labels) pairs. Labels name the variant
or group a point came from; those not named after a config key become columns.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from trainables.defaults import CHOICES, check_keys
from trainables.errors import ConfigError, suggest

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
        raise ConfigError(_set_inside_variants(grid, key))
    if values is None:
        return new
    return new if hit else cross(grid, axis(key, values))


def _variants(grid, name: str | None) -> list[Variants]:
    """Every variants(name, ...) in `grid` (name None: every variants): a name can recur, e.g. in union groups."""
    if isinstance(grid, Variants):
        return [grid] if grid.name == name or name is None else []
    if isinstance(grid, Cross):
        return [v for part in grid.parts for v in _variants(part, name)]
    if isinstance(grid, Union):
        return [v for _, g in grid.groups for v in _variants(g, name)]
    return []


def variant_labels(grid, name: str) -> list[str]:
    """The labels of the variants called `name` in `grid`, in the order the sweep declares them."""
    return list(dict.fromkeys(lab for v in _variants(grid, name) for lab, _ in v.options))


def select_variants(grid, name: str, labels: list[str], full=None) -> object:
    """`grid` with only the variants `labels` of every variants(name, ...) in it, each with its own settings.
    They keep the sweep's order, not the order given, so the trials list as they do in the full sweep.
    `full` is the whole grid when `grid` is the --smoke one, to tell a label --smoke left out from a typo."""
    known = variant_labels(grid, name)
    for label in labels:
        if label in known:
            continue
        listed = ", ".join(known) or "none"
        if full is not None and label in variant_labels(full, name):
            raise ConfigError(f'--grid {name}={label}: variant "{label}" is not in the --smoke grid, whose '
                              f'"{name}" variants are {listed}; drop --smoke to run it')
        from trainables.config import registry_choices  # the registries load torch: only when a name is wrong
        if label in {**CHOICES, **registry_choices()}.get(name, ()):
            # The variants are named after a config key: they win, since a variant sets more than that key.
            raise ConfigError(f'--grid {name}={label}: "{label}" is a valid {name} but not one of this sweep\'s '
                              f'"{name}" variants ({listed}); --grid {name}= picks variants here, each with '
                              f"its own settings")
        hint = suggest(label, known)  # a list of the valid names otherwise, which the message already has
        raise ConfigError(f'--grid {name}={label}: no variant "{label}"{hint if "did you mean" in hint else ""}; '
                          f'this sweep\'s "{name}" variants are {listed}')

    def walk(node):
        if isinstance(node, Variants) and node.name == name:
            # where a recurring name lacks every label (another union group), that part drops out
            return Variants(name, tuple((lab, opts) for lab, opts in node.options if lab in labels))
        if isinstance(node, Cross):
            return Cross(tuple(walk(p) for p in node.parts))
        if isinstance(node, Union):
            return Union(tuple((g, walk(sub)) for g, sub in node.groups))
        return node
    return walk(grid)


def _set_inside_variants(grid, key: str) -> str:
    """What to do instead of --grid KEY=... when KEY only moves with a variant: an axis of its own would
    cross it with the variants and break the bundles (a value the variant's init does not read)."""
    name = next(v.name for v in _variants(grid, None) if key in v.keys())
    setters = list(dict.fromkeys(lab for v in _variants(grid, name) for lab, opts in v.options if key in opts))
    labels = variant_labels(grid, name)
    text = (f'--grid {key}=...: "{key}" is set inside this sweep\'s "{name}" variants ({", ".join(labels)}), '
            f"not on an axis; pick variants with --grid {name}=NAME[,NAME...]")
    if setters == labels:  # every variant reads it, so one value fits them all
        return text + f", or fix {key} in all of them with --set {key}=..."
    # only the variants that set it are sure to read it; --set alone would reach the others too
    return text + f", or fix {key} where it is set with --grid {name}={','.join(setters)} --set {key}=..."
