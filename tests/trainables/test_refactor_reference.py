"""Refactor check: a 2-epoch CPU run of every model family reports the same metrics as the code before the
architecture change (issue 12) did, within what the CPU's vector unit can change.

tests/data/train_reference.json was written by the pre-refactor code (commit 61df62e) with one thread. Its
cases cover each model family and each study hook (validation split, class metrics and loss weights, k-fold,
init snapshots, LSUV, dropout, the probe task, fused packs), so a hook that moved changes nothing a trial
reports. Only wall-clock fields are left out.

Why a tolerance and not the bits: PyTorch picks its CPU kernels by vector unit (ATEN_CPU_CAPABILITY =
default, avx2, avx512), and the same code and torch give other floats on another CPU. Epoch-1 train_loss
agrees to the last digit, but evaluation already differs (cnn val_loss 2.12733 in the file, 2.12814 with
default kernels) and two epochs of training amplify it (resnet18 train_loss 0.8% apart).

How the tolerance is set: `python -m tests.trainables.test_refactor_reference --calibrate` runs every case in a
subprocess under each capability this CPU has and records, per case and metric, the largest deviation from
the reference (tests/data/train_spread.json). A deviation is |got - ref| / max(|ref|, floor), where floor is
1e-3 of the metric's largest |ref| in that case, so that values near zero (weight_mean) do not blow up. The
check allows FACTOR times the calibrated spread, plus 1e-6. Integers and strings (epochs, statuses, layer
names, class supports, checkpoint contents) compare exactly. A confusion matrix compares as the number of
predictions that moved, and its row sums (the test set's labels) exactly. The per-class precision, recall,
BCR, one-vs-rest accuracy and aggregate are functions of the confusion matrix (tests/studies/test_imbalance.py checks
that arithmetic); on classes of 10-20 images one moved prediction shifts them by up to 1, so they are not
compared here.

Calibrated on 2026-12-03 on an AMD EPYC with AVX2 (no AVX-512), torch 2.14.1; the reference file itself came
from the machine that wrote it before the refactor. Largest spreads: resnet18 (train_loss 0.8%, grad_abs_mean
3%), cnn (val_loss 0.3%); vgg08, mlp and the probes agree to 1e-5 or better.

What still fails it (`python -m tests.trainables.test_refactor_reference --regressions`, same machine). Per failing case,
the worst deviation as a multiple of what is allowed, among the metrics the CPUs moved (a value compared
exactly, such as the lr of a shifted schedule, fails by far more); test_regression_fails_the_check re-checks
one case of each on every run:

    crop and flip swapped (same draws)  8 of 10 cases fail (the probes do not augment): cnn x1,080,
                                        vgg x139, vgg08 x14, mlp x13,100, baseline4 x270, deeper7 x6.1,
                                        resnet18 x2.3, packed x1,360
    init gain off by sqrt(2)            7 of 10 (LSUV, torch's default init and N(0, 1) have no gain):
                                        weight_std x3,860 (deeper7) to x391,000 (probe_data)
    lr schedule one epoch early         the one cosine case (vgg): train_loss x1,750, and its lr exactly

Bit for bit, as before, on the machine that wrote the file: REFERENCE_BITWISE=1 python -m pytest
tests/trainables/test_refactor_reference.py. Regenerate the reference only for a change meant to alter the numbers, say
so in its commit, and recalibrate.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from trainables.data import make_synthetic

pytestmark = pytest.mark.numerics

DATA = Path(__file__).resolve().parents[1] / "data"
REFERENCE = DATA / "train_reference.json"
SPREAD = DATA / "train_spread.json"
FACTOR = 4.0        # headroom over the calibrated spread: a CPU that was not measured may land further out
EPSILON = 1e-6      # allowed even where every measured CPU agreed to the bit
FLOOR = 1e-3        # of a metric's largest |ref| in its case: the scale below which a value counts as zero
# An accuracy is a count of predictions: an image whose two top logits nearly tie flips on a CPU whose kernels round
# otherwise (seen on an Intel Xeon: cnn's epoch-0 test_acc moved by 1 of 128 against a spread calibrated on AMD).
# One prediction of the smallest split in these cases (val_size 32) is allowed on any accuracy; losses, gradients and
# the confusion matrices keep their calibrated tolerance, so a real change still shows there.
ONE_PREDICTION = 1 / 32
CAPABILITIES = ("default", "avx2", "avx512")
TIMING = ("seconds", "it_per_s")
# Per-layer diagnostics added after the reference was written (issue 14; tests/trainables/test_diagnostics.py checks
# them): new keys beside the reference's.
ADDED_LAYER_KEYS = ("update_ratio", "dead_fraction")
DERIVED = ("precision", "recall", "bcr", "ova_acc", "aggregated")  # per-class, from the confusion matrix
SMALL = dict(dataset="synthetic", epochs=2, batch_size=64, device="cpu", width=8)

CASES = {
    "cnn": dict(SMALL, model="cnn", depth=4, activation="prelu", val_size=32),
    "vgg": dict(SMALL, model="vgg", stages=1, blocks=1, residual=True, bn=True, schedule="cosine", lr_min=1e-5),
    "vgg08": dict(SMALL, model="vgg08", width=8),
    "mlp": dict(SMALL, model="mlp", depth=3, width=32, dropout=0.2, dropout_at="all", init="lsuv",
                init_targets="all", init_batch=64),
    "baseline4": dict(dataset="synthetic", epochs=2, device="cpu", model="baseline4", class_metrics="every",
                      imbalance_ratio=5.0, class_weights="inverse"),
    "deeper7": dict(dataset="synthetic", epochs=2, device="cpu", model="deeper7", init="xavier_normal",
                    folds=3, fold=1, weight_snapshots=True, optimizer="sgd", lr=0.01, checkpoint_every=1),
    "resnet18": dict(dataset="synthetic", epochs=2, device="cpu", model="resnet18", init="default",
                     train_subset=128),
    "probe_data": dict(dataset="synthetic", device="cpu", model="cnn", depth=6, width=8, task="probe",
                       init_batch=64),
    "probe_gaussian": dict(dataset="synthetic", device="cpu", model="mlp", depth=5, width=16, task="probe",
                           probe_input="gaussian", init="normal", init_batch=32),
}
PACK = [dict(SMALL, model="cnn", depth=3, seed=s, init=i) for s, i in ((0, "he_normal"), (1, "xavier_normal"))]
NAMES = [*CASES, "packed"]


def data():
    return make_synthetic(384, 128)


def clean(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in TIMING}
    if "layers" in out:
        out["layers"] = [{k: v for k, v in row.items() if k not in ADDED_LAYER_KEYS} for row in out["layers"]]
    return out


def run_case(config: dict) -> dict:
    from trainables.tasks import run_task
    epochs, states = [], []

    def report(metrics, state):
        epochs.append(clean(metrics))
        states.append(None if state is None else sorted(state))

    final = run_task(config, data(), report)
    return dict(epochs=epochs, states=states, final=clean(final))


def run_pack() -> list[dict]:
    from benchmarks.packed import train_packed
    reported = [[] for _ in PACK]
    reports = [(lambda m, s, k=k: reported[k].append(clean(m))) for k in range(len(PACK))]
    finals = train_packed(PACK, data(), reports)
    return [dict(epochs=r, final=clean(f)) for r, f in zip(reported, finals)]


def run(name: str):
    """One case as JSON would hold it (tuples become lists, as in the reference file)."""
    return json.loads(json.dumps(run_pack() if name == "packed" else run_case(CASES[name])))


def capture(names=NAMES) -> dict:
    return {name: run(name) for name in names}


# --- comparing a run with the reference ---------------------------------------------------------------

def leaves(tree, path=()):
    """(path, value) for every value compared; a confusion list becomes one {(split, true, pred): count}."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "confusion":
                yield path + (key,), {(c["split"], c["true"], c["pred"]): c["count"] for c in value}
            elif key not in DERIVED:
                yield from leaves(value, path + (key,))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from leaves(value, path + (i,))
    else:
        yield path, tree


def metric(path: tuple) -> str:
    return next(p for p in reversed(path) if isinstance(p, str))


def moved(a: dict, b: dict) -> float:
    """Predictions that moved between two confusion matrices; inf if a true class's total changed."""
    def rows(m):
        out = {}
        for (split, true, _), count in m.items():
            out[split, true] = out.get((split, true), 0) + count
        return out
    if rows(a) != rows(b):
        return math.inf
    return sum(abs(a.get(k, 0) - b.get(k, 0)) for k in a.keys() | b.keys()) / 2


def deviations(got, reference) -> dict:
    """Per (path, metric), how far `got` is from the reference: a scaled float deviation, moved predictions
    for a confusion matrix, 0 or inf for anything compared exactly. A structural change is inf."""
    ref, new = dict(leaves(reference)), dict(leaves(got))
    if ref.keys() != new.keys():
        return {(path, metric(path) if path else "?"): math.inf for path in ref.keys() ^ new.keys()}
    scale = {}
    for path, value in ref.items():
        if isinstance(value, float) and math.isfinite(value):
            scale[metric(path)] = max(scale.get(metric(path), 0.0), abs(value))
    out = {}
    for path, r in ref.items():
        g, key = new[path], metric(path)
        if isinstance(r, dict):
            out[path, key] = moved(g, r)
        elif isinstance(r, float) and isinstance(g, float):
            if math.isnan(r) or math.isnan(g):
                out[path, key] = 0.0 if math.isnan(r) and math.isnan(g) else math.inf
            else:
                diff = abs(g - r)
                if key.endswith("_acc"):
                    diff = max(0.0, diff - ONE_PREDICTION - 1e-12)
                out[path, key] = diff / max(abs(r), FLOOR * scale.get(key, 0.0), 1e-30)
        else:
            out[path, key] = 0.0 if g == r else math.inf
    return out


def spread_of(runs: list, reference) -> dict:
    """The largest deviation per metric over several runs of one case."""
    out: dict[str, float] = {}
    for got in runs:
        for (_, key), dev in deviations(got, reference).items():
            out[key] = max(out.get(key, 0.0), dev)
    return out


def violations(got, reference, spread: dict) -> list[tuple[float, str]]:
    """(deviation / allowed, where) for each value outside its tolerance, worst first."""
    bad = []
    for (path, key), dev in deviations(got, reference).items():
        allowed = FACTOR * spread.get(key, 0.0) + EPSILON
        if dev > allowed:
            bad.append((dev / allowed, f"{'/'.join(map(str, path))}: deviation {dev:.3g}, allowed {allowed:.3g}"))
    return sorted(bad, reverse=True)


def same_bits(a, b) -> bool:
    """Equal, with NaN equal to NaN and floats compared exactly."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_bits(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_bits(x, y) for x, y in zip(a, b))
    return a == b


# --- plausible regressions, to show the check still catches them -----------------------------------------

def _crop_after_flip(x, generator, pad: int = 4):
    """data.random_crop_flip with the flip applied to the padded image before the crop: the same draws
    and the same distribution of crops, but another image for most offsets."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), generator=generator)
    flip = torch.rand(n, 1, 1, generator=generator) < 0.5
    rows = dy + torch.arange(h).view(1, h, 1)
    cols = dx + torch.arange(w).view(1, 1, w)
    cols = torch.where(flip, w + 2 * pad - 1 - cols, cols)
    flat = (rows * (w + 2 * pad) + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


def _gain_times_sqrt2(monkeypatch):
    from trainables import inits
    original = inits.gain
    monkeypatch.setattr(inits, "gain", lambda config, default: original(config, default) * math.sqrt(2.0))


def _schedule_one_epoch_early(monkeypatch):
    from benchmarks import packed
    from trainables import loop, train
    original = loop.make_scheduler

    def early(optimizer, config):
        scheduler = original(optimizer, config)
        with warnings.catch_warnings():  # torch warns of a step before the optimizer's first
            warnings.simplefilter("ignore", UserWarning)
            scheduler.step()
        return scheduler
    for module in (loop, train, packed):
        monkeypatch.setattr(module, "make_scheduler", early)


REGRESSIONS = {
    "crop and flip swapped": lambda mp: mp.setattr("trainables.loop.random_crop_flip", _crop_after_flip),
    "init gain off by sqrt(2)": _gain_times_sqrt2,
    "lr schedule one epoch early": _schedule_one_epoch_early,
}
# one cheap case each regression reaches, re-checked on every run of the suite
REGRESSION_CASE = {"crop and flip swapped": "vgg08", "init gain off by sqrt(2)": "probe_data",
                   "lr schedule one epoch early": "vgg"}


# --- the tests -----------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference was written with one thread: reduction order is part of the bits
    yield
    torch.set_num_threads(threads)


def load(path: Path, name: str):
    return json.loads(path.read_text())[name]


@pytest.mark.parametrize("name", NAMES)
def test_metrics_match_pre_refactor_reference(name):
    reference, got = load(REFERENCE, name), run(name)
    if os.environ.get("REFERENCE_BITWISE") == "1":  # opt-in, on the machine that wrote the file
        assert same_bits(got, reference), f"{name}: metrics differ from the reference bit for bit"
        return
    bad = violations(got, reference, load(SPREAD, name))
    assert not bad, (f"{name}: {len(bad)} values outside the calibrated tolerance "
                     f"({os.environ.get('ATEN_CPU_CAPABILITY', 'native')} kernels); worst:\n  "
                     + "\n  ".join(text for _, text in bad[:8]))


@pytest.mark.parametrize("regression", REGRESSIONS)
def test_regression_fails_the_check(regression, monkeypatch):
    """The tolerance is not so wide that a real change of behaviour passes."""
    name = REGRESSION_CASE[regression]
    REGRESSIONS[regression](monkeypatch)
    assert violations(run(name), load(REFERENCE, name), load(SPREAD, name)), f"{regression} passed the check"


def test_check_flags_a_structural_change():
    reference = load(REFERENCE, "mlp")
    changed = json.loads(json.dumps(reference))
    changed["epochs"][0]["status"] = "diverged"
    assert violations(changed, reference, load(SPREAD, "mlp"))
    del changed["epochs"][0]["layers"]
    assert violations(changed, reference, load(SPREAD, "mlp"))


# --- calibration and the regression table (run by hand) ---------------------------------------------------

def supported() -> list[str]:
    """The capabilities this CPU can run: those up to the one torch picks by itself. (Forcing one the CPU
    lacks dies with SIGILL, but only in the kernels that use it, so trying one is no test.)"""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    native = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                            env=env, capture_output=True, text=True, check=True).stdout.strip().lower()
    return list(CAPABILITIES[:CAPABILITIES.index(native) + 1]) if native in CAPABILITIES else ["default"]


def capture_under(capability: str) -> dict:
    code = ("import json, sys, torch; torch.set_num_threads(1); "
            "from tests.trainables.test_refactor_reference import capture; json.dump(capture(), sys.stdout)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ATEN_CPU_CAPABILITY": capability},
                         cwd=DATA.parent.parent, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def calibrate() -> None:
    """Spreads from a run under every capability this CPU supports, merged with what the file already
    holds (a calibration on another CPU only widens it)."""
    reference = json.loads(REFERENCE.read_text())
    runs = {cap: capture_under(cap) for cap in supported()}
    spread = json.loads(SPREAD.read_text()) if SPREAD.exists() else {}
    for name in NAMES:
        measured = spread_of([run[name] for run in runs.values()], reference[name])
        old = spread.get(name, {})
        spread[name] = {k: max(measured.get(k, 0.0), old.get(k, 0.0)) for k in sorted(measured.keys() | old.keys())}
    SPREAD.write_text(json.dumps(spread, indent=1, sort_keys=True) + "\n")
    print(f"calibrated under {', '.join(runs)}; wrote {SPREAD}")


def regression_table() -> None:
    """Per regression: the cases that fail, and per failing case the worst deviation / allowed among the
    metrics the CPUs moved (an exactly compared value, such as the lr of a shifted schedule, fails by far
    more, so it is left out of that figure)."""
    reference, spread = json.loads(REFERENCE.read_text()), json.loads(SPREAD.read_text())
    for regression, inject in REGRESSIONS.items():
        with pytest.MonkeyPatch.context() as mp:
            inject(mp)
            runs = {name: run(name) for name in NAMES}
        failing = {}
        for name, got in runs.items():
            if violations(got, reference[name], spread[name]):
                noisy = {k: v for k, v in spread[name].items() if v > 0}
                ratios = [(dev / (FACTOR * noisy[key] + EPSILON), key)
                          for (_, key), dev in deviations(got, reference[name]).items() if key in noisy]
                failing[name] = max(ratios, default=(math.inf, "exact values only"))
        print(f"{regression:<30s} {len(failing)}/{len(NAMES)}  "
              + ", ".join(f"{name} x{r:.3g} ({key})" for name, (r, key) in failing.items()))


if __name__ == "__main__":
    torch.set_num_threads(1)
    if "--calibrate" in sys.argv:
        calibrate()
    elif "--regressions" in sys.argv:
        regression_table()
    elif "--write" in sys.argv:
        REFERENCE.write_text(json.dumps(capture(), indent=1))
        print(f"wrote {REFERENCE}; now recalibrate: python -m tests.trainables.test_refactor_reference --calibrate")
    else:
        sys.exit("usage: python -m tests.trainables.test_refactor_reference --calibrate | --regressions | --write")
