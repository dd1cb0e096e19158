"""The spine without Ray: config, inits, models, data readers, augmentation, train()."""
from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn

from trainables.config import DEFAULTS, ConfigError, coerce, resolve
from trainables.data import (DataError, load_cifar, make_synthetic, random_crop_flip, stratified_split,
                             trial_splits)
from trainables.inits import apply_init, weight_layers
from trainables.models import build_model, count_params
from trainables.train import train

pytestmark = pytest.mark.numerics  # computed numbers compared: CI runs these again under ATEN_CPU_CAPABILITY=default


# --- config ---------------------------------------------------------------------------------

def test_resolve_fills_defaults_and_rejects_unknown_keys_with_suggestion():
    config = resolve({"depth": 3})
    assert config["depth"] == 3 and config["lr"] == DEFAULTS["lr"]
    with pytest.raises(ConfigError, match='unknown config key "dept".*did you mean "depth"'):
        resolve({"dept": 3})


@pytest.mark.parametrize("overrides, message", [
    ({"init": "hee_normal"}, 'did you mean "he_normal"'),
    ({"activation": "rleu"}, 'did you mean "relu"'),
    ({"model": "cnnn"}, 'did you mean "cnn"'),
    ({"dataset": "cifar11"}, 'did you mean "cifar10"'),
    ({"depth": 0}, "depth=0: must be > 0"),
    ({"lr": -1.0}, "lr=-1.0: must be > 0"),
    ({"batch_size": 2.5}, "batch_size=2.5: expected int"),
    ({"weight_decay": float("nan")}, "finite"),
    ({"model": "vgg38", "dropout": 0.3}, 'model="vgg38" has no dropout layers'),
])
def test_resolve_rejects_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(overrides)


def test_coerce_parses_command_line_strings_to_the_default_type():
    assert coerce("lr", "3e-4") == pytest.approx(3e-4)
    assert coerce("depth", "12") == 12 and coerce("augment", "false") is False
    with pytest.raises(ConfigError, match="expected int"):
        coerce("depth", "twelve")


# --- inits ----------------------------------------------------------------------------------

def _conv(cin=64, cout=128, k=3):
    return nn.Sequential(nn.Conv2d(cin, cout, k), nn.Flatten(), nn.Linear(10, 10))


@pytest.mark.parametrize("init, mode, expected", [
    ("he_normal", "fan_in", math.sqrt(2 / (64 * 9))),
    ("he_normal", "fan_out", math.sqrt(2 / (128 * 9))),
    ("he_uniform", "fan_in", math.sqrt(2 / (64 * 9))),
    ("xavier_normal", None, math.sqrt(2 / (64 * 9 + 128 * 9))),  # Xavier has no mode: both fans
    ("xavier_uniform", None, math.sqrt(2 / (64 * 9 + 128 * 9))),
])
def test_init_std_matches_formula(init, mode, expected):
    torch.manual_seed(0)
    model = apply_init(_conv(), resolve({"init": init, **({"init_mode": mode} if mode else {})}))
    std = model[0].weight.std().item()
    assert std == pytest.approx(expected, rel=0.03)  # 73,728 draws: sampling error ~0.3%


def test_normal_init_and_targets():
    torch.manual_seed(0)
    default_linear = _conv()[2].weight.std().item()
    model = apply_init(_conv(), resolve({"init": "normal", "init_std": 1.0, "init_targets": "all"}))
    assert model[0].weight.std().item() == pytest.approx(1.0, rel=0.03)
    assert model[2].weight.std().item() == pytest.approx(1.0, rel=0.25)  # only 100 draws
    conv_only = apply_init(_conv(), resolve({"init": "normal", "init_targets": "conv"}))
    assert conv_only[2].weight.std().item() < 0.5 and default_linear < 0.5  # linear left at PyTorch default


def test_orthogonal_init_gives_orthonormal_rows():
    model = apply_init(nn.Sequential(nn.Linear(64, 32)), resolve({"init": "orthogonal", "init_targets": "all"}))
    w = model[0].weight
    assert torch.allclose(w @ w.T, torch.eye(32), atol=1e-5)


# --- models ---------------------------------------------------------------------------------

@pytest.mark.parametrize("depth, flat", [(1, 32 * 32 * 32), (2, 32 * 32 * 32), (3, 32 * 16 * 16),
                                         (5, 32 * 8 * 8), (10, 32 * 2 * 2), (12, 32 * 1 * 1), (30, 32)])
def test_cnn_shapes_and_parameter_counts(depth, flat):
    config = resolve({"model": "cnn", "depth": depth, "width": 32, "activation": "relu"})
    model = build_model(config, 10)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    convs = 3 * 32 * 9 + 32 + (depth - 1) * (32 * 32 * 9 + 32)
    bns = (depth - 1) * 64
    assert count_params(model) == convs + bns + flat * 10 + 10
    assert len(weight_layers(model)) == depth + 1


def test_prelu_shared_and_per_channel():
    shared = build_model(resolve({"depth": 3, "activation": "prelu"}), 10)
    per_channel = build_model(resolve({"depth": 3, "activation": "prelu", "prelu_shared": False}), 10)
    assert count_params(per_channel) - count_params(shared) == 3 * 31


# --- data -----------------------------------------------------------------------------------

def test_reader_on_generated_cifar10_and_cifar100(tiny_cifar10, tiny_cifar100):
    c10 = load_cifar("cifar10", tiny_cifar10)
    assert c10.train_x.shape == (100, 3, 32, 32) and c10.train_x.dtype == torch.uint8
    assert c10.test_x.shape == (20, 3, 32, 32) and c10.num_classes == 10 and c10.source == "subset"
    raw = pickle.loads((tiny_cifar10 / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    assert torch.equal(c10.train_x[0].flatten(), torch.as_tensor(raw[b"data"][0]))  # channel-major rows
    c100 = load_cifar("cifar100", tiny_cifar100 / "cifar-100-python")  # the folder itself works too
    assert c100.num_classes == 100 and len(c100.train_y) == 200 and c100.classes[3] == "fine3"


def test_reader_on_the_real_subset(subset_dir):
    data = load_cifar("cifar10", subset_dir)
    assert (len(data.train_y), len(data.test_y)) == (5085, 1017)
    assert data.classes[0] == "airplane" and data.source == "subset"
    counts = torch.bincount(data.train_y, minlength=10)
    assert counts.min() > 300  # close to uniform, as its README says
    pixel_mean = (data.train_x.float() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(pixel_mean, torch.tensor(data.mean), atol=0.03)  # the constants fit real data


def test_reader_errors_name_the_problem(tiny_cifar10, tmp_path):
    batch = tiny_cifar10 / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(DataError, match="corrupt CIFAR batch file .*data_batch_3"):
        load_cifar("cifar10", tiny_cifar10)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="holds no 'cifar-10-batches-py' folder"):
        load_cifar("cifar10", tmp_path / "other")


def test_missing_data_without_network_fails_clearly_and_leaves_nothing(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    target = tmp_path / "fresh"
    with pytest.raises(DataError, match="download failed.*Put the official 'cifar-10-batches-py' folder"):
        load_cifar("cifar10", target)
    assert not target.exists()


def test_stratified_split_is_proportional_disjoint_and_seeded():
    labels = torch.arange(1000) % 10
    train_idx, val_idx = stratified_split(labels, 250, seed=0)
    assert len(val_idx) == 250 and len(train_idx) == 750
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert torch.bincount(labels[val_idx]).tolist() == [25] * 10
    assert torch.equal(val_idx, stratified_split(labels, 250, seed=0)[1])
    assert not torch.equal(val_idx, stratified_split(labels, 250, seed=1)[1])


def test_trial_splits_respect_subsets_and_validation():
    data = make_synthetic(500, 100)
    splits = trial_splits(data, resolve({"dataset": "synthetic", "train_subset": 300, "test_subset": 50,
                                         "val_size": 60}))
    assert len(splits["train"][1]) == 240 and len(splits["val"][1]) == 60 and len(splits["test"][1]) == 50


def _crops(image: torch.Tensor, pad: int = 4) -> list[torch.Tensor]:
    """Every image RandomCrop(32, padding=4) + RandomHorizontalFlip could produce from `image`."""
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + 32, dx:dx + 32]
            out += [crop, crop.flip(-1)]
    return out


def test_crop_flip_yields_only_valid_crops_and_flips_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (400, 3, 32, 32), dtype=torch.uint8, generator=g)
    out = random_crop_flip(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(0, 400, 40):
        assert any(torch.equal(out[i], c) for c in _crops(x[i]))
    # Without padding a crop is the identity, so only the flip changes an image.
    plain = random_crop_flip(x, torch.Generator().manual_seed(1), pad=0)
    flipped = sum(torch.equal(p, xi.flip(-1)) for p, xi in zip(plain, x)) / len(x)
    same = sum(torch.equal(p, xi) for p, xi in zip(plain, x)) / len(x)
    assert same + flipped == 1 and 0.4 < flipped < 0.6
    # Offsets cover the whole 0..8 range: some crops show padding on each side.
    assert (out[:, :, 0, :] == 0).all(dim=(1, 2)).any() and (out[:, :, -1, :] == 0).all(dim=(1, 2)).any()


# --- train ----------------------------------------------------------------------------------

TINY = dict(dataset="synthetic", train_subset=512, test_subset=256, depth=3, epochs=4, batch_size=64)


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(600, 300)


def test_train_lowers_the_loss_and_reports_every_epoch(synthetic):
    reports = []
    summary = train(TINY, synthetic, lambda m, s: reports.append(m))
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
    assert reports[-1]["train_loss"] < reports[0]["train_loss"] * 0.8
    assert summary["status"] == "completed" and summary["test_acc"] > 0.2  # chance is 0.1
    layers = reports[-1]["layers"]
    assert [l["layer_name"] for l in layers] == ["conv1", "conv2", "conv3", "fc1"]
    assert all(l["grad_abs_mean"] > 0 and l["weight_std"] > 0 for l in layers)
    for r in reports:
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1 and r["seconds"] > 0


def test_same_seed_gives_identical_metrics_and_another_seed_differs(synthetic):
    def run(seed):
        out = []
        train({**TINY, "epochs": 2, "seed": seed}, synthetic, lambda m, s: out.append(m))
        return [(r["train_loss"], r["test_acc"], r["avg_weight"]) for r in out]
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_validation_split_reports_val_metrics(synthetic):
    reports = []
    train({**TINY, "epochs": 1, "val_size": 100}, synthetic, lambda m, s: reports.append(m))
    assert "val_acc" in reports[0] and "val_loss" in reports[0]


def test_divergence_ends_the_trial_with_status_diverged(synthetic):
    reports = []
    summary = train({**TINY, "optimizer": "sgd", "lr": 1e30, "momentum": 0.0, "bn": False}, synthetic,
                    lambda m, s: reports.append(m))
    assert summary["status"] == "diverged"
    assert reports[-1]["status"] == "diverged" and len(reports) < 4
    assert not math.isfinite(reports[-1]["train_loss"])


def test_resume_from_a_checkpoint_reproduces_the_uninterrupted_run(synthetic):
    config = {**TINY, "epochs": 3, "checkpoint_every": 1}
    full, states = [], {}
    train(config, synthetic, lambda m, s: (full.append(m), states.__setitem__(m["epoch"], s)))
    resumed = []
    train(config, synthetic, lambda m, s: resumed.append(m), resume=states[1])
    assert [r["epoch"] for r in resumed] == [2, 3]
    for a, b in zip(full[1:], resumed):
        assert (a["train_loss"], a["test_acc"]) == (b["train_loss"], b["test_acc"])
