"""Sampled keys: distributions a search-space file crosses with its grid (issue 13, adaptive search).

    cross(variants("init", ...), axis("depth", [5, 10]), loguniform("lr", 1e-5, 1.0))

A `Sampled` node behaves like a grid node that contributes no grid point, so `Cross.points()` still
gives the grid cells; the runner pulls the nodes out (`sampled_nodes`, `without_sampled`) and either
draws values per cell (`draw`, random search) or hands `domain()` to a Ray searcher or scheduler.
Everything is validated when the node is made, so a bad sweep file fails at import, before Ray starts.
On the command line the same nodes come from `--grid lr=loguniform:1e-5:1` (`parse_grid_value`).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from sweeps.engine.grid import Cross, Union
from trainables.defaults import CHOICES, DEFAULTS, _check_value, check_keys, coerce
from trainables.errors import ConfigError, suggest

# kind -> the --grid form; choice has none: a plain comma list is already a grid axis
FORMS = {"loguniform": "LOW:HIGH", "uniform": "LOW:HIGH", "randint": "LOW:HIGH",
         "quniform": "LOW:HIGH:Q", "qloguniform": "LOW:HIGH:Q"}
KINDS = (*FORMS, "choice")
QUANTIZED = ("quniform", "qloguniform")


@dataclass(frozen=True)
class Sampled:
    """One config key drawn from a distribution. `args` is (low, high), (low, high, q) or, for choice,
    (values,); the constructors below validate and normalise it (bounds coerced to the key's type)."""
    key: str
    kind: str
    args: tuple

    def __post_init__(self):
        # validated here, not only in the constructors, so a node rebuilt from anywhere is checked too
        object.__setattr__(self, "args", _validate(self.key, self.kind, tuple(self.args)))

    def points(self) -> list:
        return [({}, {})]  # no grid point of its own: Cross multiplies by one

    def keys(self) -> set[str]:
        return {self.key}

    def axis_keys(self) -> set[str]:
        return set()  # drawn values are not grid axes

    @property
    def log(self) -> bool:
        return self.kind in ("loguniform", "qloguniform")

    def spec(self) -> str:
        """The text form, e.g. "loguniform:1e-05:1.0" (sweep.json, reports; `parse` reads it back)."""
        return _spec(self.kind, self.args)

    def domain(self):
        """The Ray Tune search domain. Ray's randint excludes `high`; quniform/qloguniform include it."""
        from ray import tune  # here, not at the top: sweep files and --dry-run should not pay for importing Ray
        if self.kind == "choice":
            return tune.choice(list(self.args[0]))
        return getattr(tune, self.kind)(*self.args)


def loguniform(key: str, low: float, high: float) -> Sampled:
    return Sampled(key, "loguniform", (low, high))


def uniform(key: str, low: float, high: float) -> Sampled:
    return Sampled(key, "uniform", (low, high))


def quniform(key: str, low: float, high: float, q: float) -> Sampled:
    """Multiples of q in [low, high], high included (Ray's quantisation); low and high must be multiples."""
    return Sampled(key, "quniform", (low, high, q))


def qloguniform(key: str, low: float, high: float, q: float) -> Sampled:
    return Sampled(key, "qloguniform", (low, high, q))


def choice(key: str, values) -> Sampled:
    # a lone string is refused by the validation, not split into its letters
    return Sampled(key, "choice", (values if isinstance(values, str) else tuple(values),))


def randint(key: str, low: int, high: int) -> Sampled:
    """Integers low, ..., high - 1: Ray's randint excludes its upper bound."""
    return Sampled(key, "randint", (low, high))


def _spec(kind: str, args: tuple) -> str:
    if kind == "choice" and len(args) == 1 and isinstance(args[0], (tuple, list)):
        return "choice:" + ",".join(map(str, args[0]))
    return ":".join([kind, *map(str, args)])


def _validate(key: str, kind: str, args: tuple, label: str | None = None) -> tuple:
    """`args` normalised, or a one-line ConfigError starting with `label` (default "key=spec")."""
    check_keys([key], "grid")
    label = label or f"{key}={_spec(kind, args)}"
    if kind not in KINDS:
        raise ConfigError(f'{label}: unknown distribution "{kind}"{suggest(kind, KINDS)}')
    want = type(DEFAULTS[key])
    if want in (str, bool) and kind != "choice":
        raise ConfigError(f"{label}: {key} is a {want.__name__} key: use choice(...) or a grid axis "
                          f"(--grid {key}=A,B)")
    if want is int and kind in ("uniform", "loguniform"):
        raise ConfigError(f"{label}: {key} is an integer key: use randint or quniform with an integer q")
    if kind == "choice":
        if len(args) != 1 or not isinstance(args[0], (tuple, list)):
            raise ConfigError(f"{label}: expected choice({key!r}, [values]), a list of values")
        if not args[0]:
            raise ConfigError(f"{label}: choice needs at least one value")
        values = tuple(_valid(key, v, "value", label) for v in args[0])
        twice = [v for i, v in enumerate(values) if v in values[:i]]
        if twice:
            raise ConfigError(f"{label}: value {twice[0]!r} is listed twice")
        return (values,)
    if len(args) != len(FORMS[kind].split(":")):
        raise ConfigError(f"{label}: expected {kind}:{FORMS[kind]}")
    for name, x in zip(("low", "high", "q"), args):
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
            raise ConfigError(f"{label}: {name} must be a number, got {type(x).__name__}")
        if not math.isfinite(x):
            raise ConfigError(f"{label}: {name} must be a finite number")
    low, high = args[:2]
    if kind == "randint":
        if not all(float(x).is_integer() for x in (low, high)):
            raise ConfigError(f"{label}: randint bounds must be integers")
        low, high = int(low), int(high)  # Ray draws with numpy's integers(): the domain stays int
    if not low < high:
        raise ConfigError(f"{label}: low must be < high")
    if kind in ("loguniform", "qloguniform") and low <= 0:
        raise ConfigError(f"{label}: low must be > 0 on a log scale")
    if kind == "randint":
        # high itself is never drawn, so the largest value that must be valid is high - 1
        _valid(key, low, "low", label), _valid(key, high - 1, "high - 1 (the largest draw)", label)
        return (low, high)
    low, high = _valid(key, low, "low", label), _valid(key, high, "high", label)
    if kind not in QUANTIZED:
        return (low, high)
    q = args[2]
    if q <= 0:
        raise ConfigError(f"{label}: q must be > 0")
    if want is int and not float(q).is_integer():
        raise ConfigError(f"{label}: {key} is an integer key: q must be an integer, got {q}")
    q = int(q) if want is int else float(q)  # int keys: draws are integral floats, which coerce() makes ints
    # Ray refuses bounds off the q grid (Float.quantized), with the same tolerance
    off = [name for name, x in (("low", low), ("high", high)) if not math.isclose(x / q, round(x / q))]
    if off:
        raise ConfigError(f"{label}: {' and '.join(off)} must be {'multiples' if len(off) > 1 else 'a multiple'} "
                          f"of q={q}")
    return (low, high, q)


def _valid(key: str, value, role: str, label: str):
    """`value` coerced to the key's type and put through the per-value checks of resolve()."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        value = coerce(key, value)
        from trainables.config import registry_choices  # the registries load torch
        _check_value(key, value, {**CHOICES, **registry_choices()})
    except ConfigError as e:
        raise ConfigError(f"{label}: {role} is invalid: {e}") from None
    return value


def parse(key: str, text: str) -> Sampled:
    """`--grid KEY=KIND:LOW:HIGH[:Q]` as a Sampled node; a malformed form names the flag."""
    flag = f"--grid {key}={text}"
    kind, _, rest = text.strip().partition(":")
    kind = kind.strip()
    if kind not in FORMS:
        raise ConfigError(f'{flag}: unknown distribution "{kind}"{suggest(kind, FORMS)}; '
                          f"expected KIND:LOW:HIGH[:Q] or a list of values")
    parts = [p.strip() for p in rest.split(":")] if rest.strip() else []
    form = f"{kind}:{FORMS[kind]}"
    if len(parts) != len(FORMS[kind].split(":")) or not all(parts):
        raise ConfigError(f"{flag}: expected {form}")
    numbers = []
    for p in parts:
        try:  # "2" stays an int, so int keys and an integer q read naturally
            numbers.append(int(p) if p.lstrip("+-").isdigit() else float(p))
        except ValueError:
            raise ConfigError(f'{flag}: expected {form} ("{p}" is not a number)') from None
    # errors name the flag as the user typed it; randint's integer bounds are checked there too
    return Sampled(key, kind, _validate(key, kind, tuple(numbers), label=flag))


def parse_grid_value(key: str, text: str) -> Sampled | None:
    """A Sampled node for `--grid key=KIND:...`, None for anything else (a plain list: a grid axis)."""
    kind, colon, _ = text.strip().partition(":")
    if colon and kind.strip() in FORMS:
        return parse(key, text)
    # a number or a bool never holds ":", so on such keys "loguniformm:..." is a typo, not a value
    if colon and key in DEFAULTS and type(DEFAULTS[key]) is not str:
        if kind.strip() == "choice":
            raise ConfigError(f"--grid {key}={text}: list the values instead (--grid {key}=A,B,C)")
        return parse(key, text)
    return None


def sampled_nodes(grid) -> list[Sampled]:
    """The Sampled nodes of a grid tree, in order. Inside union(...) they are refused: a one-factor
    group with its own distribution has no defined meaning for the other groups' cells."""
    found = []

    def walk(node, group):
        if isinstance(node, Sampled):
            if group is not None:
                raise ConfigError(f'{node.key}={node.spec()} is inside union group "{group}": '
                                  f"put the sampled key outside union(...)")
            first = next((n for n in found if n.key == node.key), None)
            if first is not None:
                raise ConfigError(f"{node.key} is sampled twice ({first.spec()} and {node.spec()}); keep one")
            found.append(node)
        elif isinstance(node, Cross):
            for part in node.parts:
                walk(part, group)
        elif isinstance(node, Union):
            for name, g in node.groups:
                walk(g, name if group is None else group)

    walk(grid, None)
    return found


def without_sampled(grid):
    """`grid` with its Sampled nodes removed; a bare Sampled becomes Cross(()), one empty point."""
    sampled_nodes(grid)  # same refusals (union, twice) before anything is rebuilt

    def walk(node):
        if isinstance(node, Cross):
            return Cross(tuple(walk(p) for p in node.parts if not isinstance(p, Sampled)))
        if isinstance(node, Union):
            return Union(tuple((name, walk(g)) for name, g in node.groups))
        return node  # Axis, Variants

    return Cross(()) if isinstance(grid, Sampled) else walk(grid)


def draw(nodes: list[Sampled], cells: int, samples: int, seed: int, constant: bool) -> list[list[dict]]:
    """`samples` dicts {key: value} for each of `cells` grid cells, drawn with Ray's own domains.

    Each (cell, key) has its own numpy stream seeded from (seed, cell, crc32(key)): the same seed gives
    the same draws in any process, and adding a sampled key or a cell does not move the other draws.
    constant=True gives every cell the draws of cell 0 (Ray's constant_grid_search), so cells pair up.
    """
    if not all(isinstance(x, int) and x >= 0 for x in (cells, samples, seed)):
        raise ConfigError(f"draw: cells={cells}, samples={samples}, seed={seed} must be integers >= 0")
    out = []
    for cell in range(cells):
        if constant and cell:
            out.append([dict(d) for d in out[0]])
            continue
        columns = {node.key: _sample(node, samples, seed, cell) for node in nodes}
        out.append([{key: column[i] for key, column in columns.items()} for i in range(samples)])
    return out


def _sample(node: Sampled, size: int, seed: int, cell: int) -> list:
    if size == 0:
        return []
    rng = np.random.default_rng([seed, cell, zlib.crc32(node.key.encode())])
    values = node.domain().sample(size=size, random_state=rng)
    if size == 1:  # Ray returns a bare value for size 1, an array or list otherwise
        values = [values]
    out = []
    for v in values:
        v = v.item() if isinstance(v, np.generic) else v
        if node.kind in QUANTIZED and isinstance(v, float):
            v = float(f"{v:.12g}")  # k * q as a float: 0.30000000000000004 -> 0.3
        out.append(coerce(node.key, v))
    return out
