"""Issue 13: sampled keys (sweeps/engine/space.py): constructors, validation, the --grid forms, deterministic draws,
and how the nodes sit in a grid tree. Fast: Ray's domains are sampled in-process, no cluster starts."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps.engine.grid import Cross, axis, cross, union, variants
from sweeps.engine.space import (Sampled, choice, draw, loguniform, parse, parse_grid_value, qloguniform, quniform,
                          randint, sampled_nodes, uniform, without_sampled)
from trainables.config import ConfigError

REPO = Path(__file__).resolve().parents[2]


# --- constructors -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("node, kind, args, spec, log", [
    (loguniform("lr", 1e-5, 1), "loguniform", (1e-5, 1.0), "loguniform:1e-05:1.0", True),
    (uniform("momentum", 0.5, 0.99), "uniform", (0.5, 0.99), "uniform:0.5:0.99", False),
    (quniform("depth", 2, 20, 2), "quniform", (2, 20, 2), "quniform:2:20:2", False),
    (quniform("momentum", 0, 0.9, 0.1), "quniform", (0.0, 0.9, 0.1), "quniform:0.0:0.9:0.1", False),
    (qloguniform("width", 8, 128, 8), "qloguniform", (8, 128, 8), "qloguniform:8:128:8", True),
    (randint("depth", 2, 13), "randint", (2, 13), "randint:2:13", False),
    (randint("lr_scale", 1, 4), "randint", (1, 4), "randint:1:4", False),
    (choice("init", ["he_normal", "xavier_normal"]), "choice", (("he_normal", "xavier_normal"),),
     "choice:he_normal,xavier_normal", False),
    (choice("bn", ["true", False]), "choice", ((True, False),), "choice:True,False", False),
    (choice("lr", [1e-3, "3e-4"]), "choice", ((1e-3, 3e-4),), "choice:0.001,0.0003", False),
])
def test_constructors(node, kind, args, spec, log):
    assert isinstance(node, Sampled) and (node.kind, node.args, node.spec(), node.log) == (kind, args, spec, log)
    assert [type(a) for a in node.args] == [type(a) for a in args]  # bounds coerced to the key's type
    assert node.points() == [({}, {})] and node.keys() == {node.key} and node.axis_keys() == set()
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.key = "width"


def test_domains_are_rays():
    from ray.tune.search.sample import Categorical, Float, Integer, Quantized
    lr = loguniform("lr", 1e-5, 1.0).domain()
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-5, 1.0)
    assert isinstance(randint("depth", 2, 13).domain(), Integer)
    assert isinstance(quniform("depth", 2, 20, 2).domain().get_sampler(), Quantized)
    assert isinstance(qloguniform("width", 8, 128, 8).domain().get_sampler(), Quantized)
    assert isinstance(uniform("momentum", 0.5, 0.99).domain(), Float)
    assert choice("init", ["he_normal", "normal"]).domain().categories == ["he_normal", "normal"]
    assert isinstance(choice("init", ["he_normal"]).domain(), Categorical)


# --- validation -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda: loguniform("lr", 1, 0.1), "lr=loguniform:1:0.1: low must be < high"),
    (lambda: uniform("momentum", 0.5, 0.5), "momentum=uniform:0.5:0.5: low must be < high"),
    (lambda: loguniform("lr", 0, 1), "lr=loguniform:0:1: low must be > 0 on a log scale"),
    (lambda: loguniform("weight_decay", 0, 1e-2), "weight_decay=loguniform:0:0.01: low must be > 0 on a log scale"),
    (lambda: qloguniform("width", 0, 64, 8), "width=qloguniform:0:64:8: low must be > 0 on a log scale"),
    (lambda: uniform("lr", -1, 1), "lr=uniform:-1:1: low is invalid: lr=-1.0: must be > 0"),
    (lambda: uniform("dropout", 0, 1), "dropout=uniform:0:1: high is invalid: dropout=1.0: must be in [0, 1)"),
    (lambda: quniform("momentum", 0, 1, 0), "momentum=quniform:0:1:0: q must be > 0"),
    (lambda: quniform("momentum", 0, 1, -0.1), "momentum=quniform:0:1:-0.1: q must be > 0"),
    (lambda: quniform("lr", 0.001, 0.009, 0.003), "lr=quniform:0.001:0.009:0.003: low must be a multiple of q=0.003"),
    (lambda: quniform("depth", 3, 21, 2), "depth=quniform:3:21:2: low and high must be multiples of q=2"),
    (lambda: uniform("depth", 2, 20),
     "depth=uniform:2:20: depth is an integer key: use randint or quniform with an integer q"),
    (lambda: loguniform("width", 8, 64),
     "width=loguniform:8:64: width is an integer key: use randint or quniform with an integer q"),
    (lambda: quniform("depth", 2, 20, 0.5), "depth=quniform:2:20:0.5: depth is an integer key: q must be an integer"),
    (lambda: randint("init", 0, 2), "init=randint:0:2: init is a str key: use choice(...)"),
    (lambda: uniform("bn", 0, 1), "bn=uniform:0:1: bn is a bool key: use choice(...)"),
    (lambda: randint("depth", 0, 5), "depth=randint:0:5: low is invalid: depth=0: must be > 0"),
    (lambda: randint("dropout", 0, 2), "dropout=randint:0:2: high - 1 (the largest draw) is invalid: dropout=1.0"),
    (lambda: randint("lr", 1, 2.5), "lr=randint:1:2.5: randint bounds must be integers"),
    (lambda: uniform("lr", 1e-4, float("inf")), "lr=uniform:0.0001:inf: high must be a finite number"),
    (lambda: uniform("lr", "1e-4", 1), "lr=uniform:1e-4:1: low must be a number, got str"),
    (lambda: choice("init", ["he_normal", "hee_normal"]),
     'init=choice:he_normal,hee_normal: value is invalid: init="hee_normal" is not a known init '
     '(did you mean "he_normal"?)'),
    (lambda: choice("depth", [2, 2.5]), "depth=choice:2,2.5: value is invalid: depth=2.5: expected int, got float"),
    (lambda: choice("optimizer", []), "optimizer=choice:: choice needs at least one value"),
    (lambda: choice("optimizer", ["sgd", "sgd"]), "optimizer=choice:sgd,sgd: value 'sgd' is listed twice"),
    (lambda: choice("init", "he_normal"), "init=choice:he_normal: expected choice('init', [values])"),
    (lambda: Sampled("lr", "normal", (0, 1)), 'lr=normal:0:1: unknown distribution "normal"'),
    (lambda: loguniform("lrr", 1e-5, 1), 'unknown grid key "lrr" (did you mean "lr"?)'),
])
def test_invalid_nodes(make, message):
    with pytest.raises(ConfigError) as e:
        make()
    text = str(e.value)
    assert text.startswith(message) and "\n" not in text, text


# --- the --grid forms -------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, text, node", [
    ("lr", "loguniform:1e-5:1", loguniform("lr", 1e-5, 1.0)),
    ("momentum", " uniform: 0.5 : 0.99 ", uniform("momentum", 0.5, 0.99)),
    ("depth", "randint:2:13", randint("depth", 2, 13)),
    ("depth", "quniform:2:20:2", quniform("depth", 2, 20, 2)),
    ("momentum", "quniform:0:0.9:0.1", quniform("momentum", 0, 0.9, 0.1)),
    ("width", "qloguniform:8:128:8", qloguniform("width", 8, 128, 8)),
    ("lr", "qloguniform:1e-4:1e-2:1e-4", qloguniform("lr", 1e-4, 1e-2, 1e-4)),
])
def test_cli_forms(key, text, node):
    assert parse_grid_value(key, text) == node == parse(key, text)
    assert parse(key, node.spec()) == node  # the recorded text reads back


@pytest.mark.parametrize("key, text", [("depth", "2,5,10"), ("lr", "1e-3"), ("init", "he_normal,normal"),
                                       ("bn", "true,false"), ("resnet_weights", "weights/a:b.pt")])
def test_plain_values_stay_an_axis(key, text):
    assert parse_grid_value(key, text) is None


@pytest.mark.parametrize("key, text, message", [
    ("lr", "loguniform:1e-5", "--grid lr=loguniform:1e-5: expected loguniform:LOW:HIGH"),
    ("lr", "loguniform:1e-5:", "--grid lr=loguniform:1e-5:: expected loguniform:LOW:HIGH"),
    ("lr", "uniform:a:b", '--grid lr=uniform:a:b: expected uniform:LOW:HIGH ("a" is not a number)'),
    ("lr", "quniform:0:1", "--grid lr=quniform:0:1: expected quniform:LOW:HIGH:Q"),
    ("lr", "qloguniform:1e-4:1e-2:1e-4:5", "--grid lr=qloguniform:1e-4:1e-2:1e-4:5: expected qloguniform:LOW:HIGH:Q"),
    ("depth", "randint:2", "--grid depth=randint:2: expected randint:LOW:HIGH"),
    ("depth", "randint:2:5.5", "--grid depth=randint:2:5.5: randint bounds must be integers"),
    ("lr", "loguniform:1:0.1", "--grid lr=loguniform:1:0.1: low must be < high"),
    ("lr", "loguniform:0:1", "--grid lr=loguniform:0:1: low must be > 0 on a log scale"),
    ("depth", "uniform:2:20", "--grid depth=uniform:2:20: depth is an integer key: use randint or quniform"),
    ("init", "uniform:0:1", "--grid init=uniform:0:1: init is a str key: use choice(...)"),
    ("lr", "loguniformm:1e-5:1", '--grid lr=loguniformm:1e-5:1: unknown distribution "loguniformm" '
                                 '(did you mean "loguniform"?)'),
    ("depth", "choice:2,5", "--grid depth=choice:2,5: list the values instead (--grid depth=A,B,C)"),
    ("lrr", "loguniform:1e-5:1", 'unknown grid key "lrr"'),
])
def test_cli_malformed(key, text, message):
    with pytest.raises(ConfigError) as e:
        parse_grid_value(key, text)
    assert str(e.value).startswith(message) and "\n" not in str(e.value), str(e.value)


def test_parse_refuses_a_plain_list():
    with pytest.raises(ConfigError, match=r"--grid depth=2,5: unknown distribution"):
        parse("depth", "2,5")


# --- drawing ----------------------------------------------------------------------------------------------

NODES = [loguniform("lr", 1e-5, 1.0), randint("depth", 2, 5), quniform("momentum", 0, 0.9, 0.1),
         qloguniform("width", 8, 128, 8), choice("init", ["he_normal", "xavier_normal", "normal"]),
         choice("bn", [True, False]), uniform("dropout", 0.0, 0.5), quniform("blocks", 2, 8, 2)]


def test_draw_shape_types_and_bounds():
    draws = draw(NODES, cells=3, samples=50, seed=0, constant=False)
    assert len(draws) == 3 and all(len(cell) == 50 for cell in draws)
    for d in (d for cell in draws for d in cell):
        assert list(d) == [n.key for n in NODES]
        assert type(d["lr"]) is float and 1e-5 <= d["lr"] <= 1.0
        assert type(d["depth"]) is int and 2 <= d["depth"] < 5
        assert type(d["momentum"]) is float and 0 <= d["momentum"] <= 0.9
        assert type(d["width"]) is int and 8 <= d["width"] <= 128 and d["width"] % 8 == 0
        assert d["init"] in ("he_normal", "xavier_normal", "normal") and type(d["bn"]) is bool
        assert type(d["dropout"]) is float and 0 <= d["dropout"] < 0.5
        assert type(d["blocks"]) is int and d["blocks"] in (2, 4, 6, 8)
        assert math.isclose(d["momentum"] / 0.1, round(d["momentum"] / 0.1), abs_tol=1e-9)
        assert d["momentum"] == round(d["momentum"], 10)  # tidy: 0.3, not 0.30000000000000004


def test_randint_excludes_high_and_float_keys_get_floats():
    values = [d["depth"] for d in draw([randint("depth", 2, 4)], 1, 200, seed=1, constant=False)[0]]
    assert set(values) == {2, 3}
    scales = [d["lr_scale"] for d in draw([randint("lr_scale", 1, 3)], 1, 50, seed=1, constant=False)[0]]
    assert set(scales) == {1.0, 2.0} and all(type(s) is float for s in scales)


def test_loguniform_is_spread_in_log_space():
    lrs = [d["lr"] for d in draw([loguniform("lr", 1e-5, 1.0)], 1, 200, seed=3, constant=False)[0]]
    assert sum(lr < 1e-3 for lr in lrs) >= 0.2 * len(lrs)  # a uniform draw would put ~0.1% there
    assert sum(lr < 1e-4 for lr in lrs) >= 0.1 * len(lrs)


def test_draws_are_deterministic_and_seeded():
    first = draw(NODES, 4, 5, seed=7, constant=False)
    assert first == draw(NODES, 4, 5, seed=7, constant=False)
    assert first != draw(NODES, 4, 5, seed=8, constant=False)
    # a key's draws do not move when another key is added, nor a cell's when cells are added
    alone = draw(NODES[:1], 4, 5, seed=7, constant=False)
    assert [[d["lr"] for d in cell] for cell in alone] == [[d["lr"] for d in cell] for cell in first]
    assert draw(NODES, 6, 5, seed=7, constant=False)[:4] == first


def test_draws_repeat_in_a_fresh_process():
    code = ("import json; from sweeps.engine.space import *; "
            "print(json.dumps(draw([loguniform('lr', 1e-5, 1.0), randint('depth', 2, 13), "
            "choice('init', ['he_normal', 'normal']), quniform('momentum', 0, 0.9, 0.1)], 3, 4, 11, False)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    nodes = [loguniform("lr", 1e-5, 1.0), randint("depth", 2, 13), choice("init", ["he_normal", "normal"]),
             quniform("momentum", 0, 0.9, 0.1)]
    assert json.loads(out.stdout) == draw(nodes, 3, 4, 11, False)


def test_constant_draws_pair_cells():
    same = draw(NODES, 4, 6, seed=2, constant=True)
    assert all(cell == same[0] for cell in same)
    same[1][0]["lr"] = -1.0  # each cell has its own dicts
    assert same[0][0]["lr"] != -1.0
    apart = draw(NODES, 4, 6, seed=2, constant=False)
    assert apart[0] == draw(NODES, 4, 6, seed=2, constant=True)[0]
    assert all(apart[i] != apart[j] for i in range(4) for j in range(i))


def test_draw_edges():
    assert draw([], 2, 3, seed=0, constant=False) == [[{}, {}, {}], [{}, {}, {}]]
    assert draw(NODES, 2, 0, seed=0, constant=False) == [[], []]
    assert draw(NODES, 0, 3, seed=0, constant=True) == []
    one = draw([loguniform("lr", 1e-5, 1.0), choice("init", ["normal"])], 1, 1, seed=0, constant=False)
    assert type(one[0][0]["lr"]) is float and one[0][0]["init"] == "normal"
    with pytest.raises(ConfigError, match="must be integers >= 0"):
        draw(NODES, 2, 3, seed=-1, constant=False)


# --- in a grid tree ---------------------------------------------------------------------------------------

INIT = variants("init", he=dict(init="he_normal", init_mode="fan_out"), n01=dict(init="normal", init_std=1.0))


def test_cross_with_a_sampled_key_keeps_its_cells():
    plain = cross(INIT, axis("depth", [2, 5, 10]))
    mixed = cross(INIT, axis("depth", [2, 5, 10]), loguniform("lr", 1e-5, 1.0))
    assert mixed.points() == plain.points() and len(mixed.points()) == 6
    assert mixed.axis_keys() == {"depth"} and mixed.keys() == plain.keys() | {"lr"}


def test_sampled_nodes_and_without_sampled_nested():
    lr, mom, drop = loguniform("lr", 1e-5, 1.0), uniform("momentum", 0.5, 0.99), choice("dropout", [0.0, 0.3])
    grid = cross(lr, cross(INIT, mom, cross(axis("depth", [2, 5]), drop)), axis("width", [16, 32]))
    assert sampled_nodes(grid) == [lr, mom, drop]
    bare = without_sampled(grid)
    assert sampled_nodes(bare) == [] and bare.points() == grid.points()
    assert bare == cross(cross(INIT, cross(axis("depth", [2, 5]))), axis("width", [16, 32]))
    assert without_sampled(lr) == Cross(()) and without_sampled(lr).points() == [({}, {})]
    assert without_sampled(cross(lr, mom)).points() == [({}, {})]
    assert sampled_nodes(lr) == [lr] and sampled_nodes(axis("depth", [2])) == []
    plain_union = union(a=axis("depth", [2, 5]), b=cross(INIT, axis("width", [16])))
    assert without_sampled(cross(plain_union, lr)) == cross(plain_union)
    assert sampled_nodes(cross(plain_union, lr)) == [lr]


def test_sampled_inside_union_is_refused():
    grid = cross(union(wd=cross(axis("weight_decay", [0.0, 1e-4]), loguniform("lr", 1e-5, 1.0)),
                       speed=axis("lr_scale", [1.0, 2.0])))
    for walk in (sampled_nodes, without_sampled):
        with pytest.raises(ConfigError) as e:
            walk(grid)
        assert str(e.value) == ('lr=loguniform:1e-05:1.0 is inside union group "wd": '
                                "put the sampled key outside union(...)")


def test_a_key_sampled_twice_is_refused():
    with pytest.raises(ConfigError, match=r"^lr is sampled twice \(uniform:0.1:0.2 and loguniform:1e-05:1.0\)"):
        sampled_nodes(cross(uniform("lr", 0.1, 0.2), cross(INIT, loguniform("lr", 1e-5, 1.0))))
