"""Data sets as in-memory uint8 tensors, and augmentation as batched tensor ops.

The CIFAR readers open the official python-format folders directly (torchvision's
CIFAR classes insist on the official checksums, so they reject the shared subset).
A sweep loads each data set once on the driver; trials receive the tensors and do
random crop + flip + normalisation per batch on their own device, so there is no
PIL, no DataLoader and no per-step host-to-device copy.
"""
from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainables.errors import DataError, DataMissing  # noqa: F401 (raised here; defined in the leaf module)
from trainables.geometry import NUM_CLASSES  # noqa: F401 (re-exported; torch-free there, so reports can read it)


@dataclass
class Dataset:
    name: str
    source: str                 # real (full official set) | subset (fewer images) | synthetic
    classes: list[str]
    train_x: torch.Tensor       # uint8, N x 3 x 32 x 32
    train_y: torch.Tensor       # int64, N
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    location: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self, used: str = "") -> str:
        """`used`: what the trials take of it (e.g. "384 train / 256 test"), first, since a long line is cut."""
        held = f"{len(self.train_y)} train / {len(self.test_y)} test images"
        return (f"{self.name} ({self.source}): {f'trials use {used} of {held}' if used else held}, "
                f"{self.num_classes} classes{' from ' + self.location if self.location else ''}")


# --- CIFAR in the official python format -------------------------------------------------------

CIFAR = {
    "cifar10": dict(
        folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
        meta="batches.meta", names_key="label_names", labels_key="labels", full_train=50_000,
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
        # The seed notebook's normalisation constants.
        mean=(0.4914, 0.4822, 0.4465), std=(0.2023, 0.1994, 0.2010)),
    "cifar100": dict(
        folder="cifar-100-python", train=["train"], test=["test"], meta="meta",
        names_key="fine_label_names", labels_key="fine_labels", full_train=50_000,
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85",
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="bytes")
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except Exception as exc:  # truncated or not a pickle at all
        raise DataError(f"corrupt CIFAR batch file {path}: {type(exc).__name__}: {exc}") from None


def _get(batch: dict, key: str, path: Path):
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise DataError(f"corrupt CIFAR batch file {path}: no '{key}' entry")


def _read_batches(folder: Path, files: list[str], labels_key: str, num_classes: int):
    xs, ys = [], []
    for name in files:
        path = folder / name
        batch = _unpickle(path)
        data = torch.as_tensor(_get(batch, "data", path))
        labels = torch.as_tensor(list(_get(batch, labels_key, path)), dtype=torch.int64)
        if data.dtype != torch.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"corrupt CIFAR batch file {path}: data has shape {tuple(data.shape)} "
                            f"and dtype {data.dtype}, expected (N, 3072) uint8")
        if len(labels) != len(data):
            raise DataError(f"corrupt CIFAR batch file {path}: {len(data)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(f"corrupt CIFAR batch file {path}: labels outside 0..{num_classes - 1}")
        xs.append(data.view(-1, 3, 32, 32))
        ys.append(labels)
    x, y = torch.cat(xs), torch.cat(ys)
    if len(y) == 0:
        raise DataError(f"CIFAR folder {folder} holds no images")
    return x, y


def find_cifar_folder(name: str, data_dir: str | Path) -> Path | None:
    """The official folder inside `data_dir`, or `data_dir` itself if it is that folder."""
    spec = CIFAR[name]
    root = Path(data_dir).expanduser()
    for candidate in (root / spec["folder"], root):
        if (candidate / spec["meta"]).exists():
            return candidate
    return None


def first_missing(path: Path) -> Path | None:
    """The outermost folder of `path` that does not exist yet (what mkdir(parents=True) would create)."""
    path = path.absolute()
    if path.exists():
        return None
    while not path.parent.exists():
        path = path.parent
    return path


def download_cifar(name: str, data_dir: Path) -> Path:
    spec = CIFAR[name]
    try:
        from torchvision.datasets.utils import download_and_extract_archive
        download_and_extract_archive(spec["url"], str(data_dir), md5=spec["md5"])
    except Exception as exc:
        raise DataError(
            f"no {name} data in {data_dir} and the download failed ({type(exc).__name__}: {exc}). "
            f"Put the official '{spec['folder']}' folder (from {Path(spec['url']).name}) inside "
            f"{data_dir}, or pass --data-dir pointing at a folder that holds it.") from None
    return data_dir / spec["folder"]


def load_cifar(name: str, data_dir: str | Path, download: bool = True) -> Dataset:
    spec = CIFAR[name]
    folder = find_cifar_folder(name, data_dir)
    if folder is None:
        root = Path(data_dir).expanduser()
        if root.exists() and any(root.iterdir()) and not (root / spec["folder"]).exists():
            hint = f"{root} exists but holds no '{spec['folder']}' folder or '{spec['meta']}' file"
            raise DataError(f"no {name} data: {hint}. Point --data-dir at the folder that contains "
                            f"'{spec['folder']}'.")
        if not download:
            raise DataError(f"no {name} data in {root}: expected '{root / spec['folder']}'")
        created = first_missing(root)
        root.mkdir(parents=True, exist_ok=True)
        try:
            folder = download_cifar(name, root)
        except DataError as exc:
            if created is not None:  # leave no empty folders behind a failed download, at any level
                shutil.rmtree(created, ignore_errors=True)
            raise DataMissing(str(exc)) from None
    meta = _unpickle(folder / spec["meta"])
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in _get(meta, spec["names_key"], folder / spec["meta"])]
    train_x, train_y = _read_batches(folder, spec["train"], spec["labels_key"], len(classes))
    test_x, test_y = _read_batches(folder, spec["test"], spec["labels_key"], len(classes))
    source = "real" if len(train_y) >= spec["full_train"] else "subset"
    return Dataset(name, source, classes, train_x, train_y, test_x, test_y,
                   spec["mean"], spec["std"], location=str(folder.resolve()))


# --- synthetic data with CIFAR shapes ---------------------------------------------------------

def make_synthetic(num_train: int = 50_000, num_test: int = 10_000, num_classes: int = 10,
                   seed: int = 0) -> Dataset:
    """Noise images with a faint per-class colour pattern, so a net can learn something.

    Results on it are labelled `synthetic` everywhere; it exists for smoke runs,
    tests and benchmarks, never for claims about CIFAR.
    """
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, 3, 4, 4, generator=g) * 96 - 48
    templates = torch.nn.functional.interpolate(templates, size=32, mode="bilinear", align_corners=False)

    def draw(n):
        y = torch.randint(num_classes, (n,), generator=g)
        noise = torch.randn(n, 3, 32, 32, generator=g) * 50 + 128
        x = (noise + templates[y]).clamp(0, 255).to(torch.uint8)
        return x, y

    train_x, train_y = draw(num_train)
    test_x, test_y = draw(num_test)
    mean = tuple((train_x[:5000].float() / 255).mean(dim=(0, 2, 3)).tolist())
    std = tuple((train_x[:5000].float() / 255).std(dim=(0, 2, 3)).tolist())
    return Dataset("synthetic", "synthetic", [f"class_{i}" for i in range(num_classes)],
                   train_x, train_y, test_x, test_y, mean, std)


DATASETS = {
    "cifar10": lambda data_dir: load_cifar("cifar10", data_dir),
    "cifar100": lambda data_dir: load_cifar("cifar100", data_dir),
    "synthetic": lambda data_dir: make_synthetic(),
}


def load_dataset(name: str, data_dir: str | Path = "./data") -> Dataset:
    return DATASETS[name](data_dir)


# --- per-trial views: subsets and a stratified validation split ------------------------------

def stratified_split(labels: torch.Tensor, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) with each class represented in proportion (largest remainder).

    Not scikit-learn's train_test_split(stratify=...): it refuses a class with a single image,
    which study 004's long-tailed training sets have (ValueError "least populated class"), and
    it would draw a different split for every split_seed of the sweeps already on disk.
    """
    if not 0 < val_size < len(labels):
        raise ValueError(f"val_size={val_size} must be between 1 and {len(labels) - 1}")
    g = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    quota = counts.double() * val_size / len(labels)
    take = quota.floor().long()
    remainder_order = torch.argsort(quota - take, descending=True, stable=True)
    take[remainder_order[: val_size - int(take.sum())]] += 1
    train_idx, val_idx = [], []
    for cls, k in zip(classes.tolist(), take.tolist()):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return torch.sort(torch.cat(train_idx)).values, torch.sort(torch.cat(val_idx)).values


def split_indices(labels: torch.Tensor, num_classes: int, config: dict) -> dict[str, torch.Tensor | slice]:
    """{'train', 'val' (when there is one)}: which training-set images each part of one trial uses.

    Order: train_subset (first N), then the long tail (imbalance_ratio), then either
    the k-fold split (folds, fold) or the stratified validation split (val_size).
    A plain slice stands for "the first N", so the common case stays a view.
    """
    idx = slice(0, config["train_subset"] or len(labels))
    if config["imbalance_ratio"] != 1.0:  # study 004: long-tailed training set
        idx = long_tail_indices(labels[idx], num_classes, config["imbalance_ratio"], config["split_seed"])
    n = len(labels[idx])
    as_tensor = torch.arange(len(labels))[idx]
    if config["folds"]:  # study 004: fold k validates, the other K-1 parts train
        train_idx, val_idx = kfold_split(labels[as_tensor], config["folds"], config["fold"], config["split_seed"])
    elif config["val_size"]:
        if config["val_size"] >= n:
            raise ValueError(f"val_size={config['val_size']} leaves no training images ({n} available)")
        train_idx, val_idx = stratified_split(labels[as_tensor], config["val_size"], config["split_seed"])
    else:
        return {"train": idx}
    return {"train": as_tensor[train_idx], "val": as_tensor[val_idx]}


def trial_splits(data: Dataset, config: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{'train', 'val' (when val_size > 0 or folds), 'test'}: (uint8 images, labels) for one trial."""
    splits = {part: (data.train_x[idx], data.train_y[idx])
              for part, idx in split_indices(data.train_y, data.num_classes, config).items()}
    n_test = config["test_subset"] or len(data.test_y)
    splits["test"] = (data.test_x[:n_test], data.test_y[:n_test])
    return splits


def split_facts(data: Dataset, config: dict) -> dict:
    """n_train, n_val and the training set's class counts (JSON list) of one trial, from labels only."""
    import json
    parts = {part: data.train_y[idx] for part, idx in split_indices(data.train_y, data.num_classes, config).items()}
    counts = torch.bincount(parts["train"], minlength=data.num_classes).tolist()
    return dict(n_train=len(parts["train"]), n_val=len(parts["val"]) if "val" in parts else 0,
                train_class_counts=json.dumps(counts))


# --- study 004: long-tailed training sets and stratified k-fold -------------------------------

def long_tail_counts(available: list[int], ratio: float) -> list[int]:
    """Images kept per class: n_c = n_max * ratio^(-c/(C-1)), capped by what class c has, at least 1.

    n_max is the largest class; class 0 is the head, class C-1 the tail (the usual
    CIFAR-LT convention, Cao et al. 2019), so the profile does not depend on the seed.
    """
    num_classes, n_max = len(available), max(available)
    if num_classes == 1:
        return list(available)
    return [min(have, max(1, int(n_max * ratio ** (-c / (num_classes - 1))))) for c, have in enumerate(available)]


def long_tail_indices(labels: torch.Tensor, num_classes: int, ratio: float, seed: int) -> torch.Tensor:
    """Sorted indices of a long-tailed subsample of `labels`; which images is fixed by `seed`."""
    available = torch.bincount(labels, minlength=num_classes).tolist()
    g = torch.Generator().manual_seed(seed)
    keep = []
    for c, n in enumerate(long_tail_counts(available, ratio)):
        idx = torch.nonzero(labels == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.sort(torch.cat(keep)).values


def kfold_split(labels: torch.Tensor, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, val_idx) of fold `fold` of scikit-learn's shuffled StratifiedKFold."""
    from sklearn.model_selection import StratifiedKFold
    smallest = int(torch.bincount(labels)[labels.unique()].min())
    if smallest < folds:
        raise ValueError(f"folds={folds}: the rarest class has only {smallest} training images; "
                         f"each fold needs at least one (lower folds or imbalance_ratio)")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_idx, val_idx = list(splitter.split(labels.numpy(), labels.numpy()))[fold]
    return torch.as_tensor(train_idx, dtype=torch.long), torch.as_tensor(val_idx, dtype=torch.long)


# --- augmentation and normalisation on the trial's device ------------------------------------

def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding plus horizontal flip, for a whole uint8 batch at once.

    Matches torchvision's RandomCrop(32, padding=4) + RandomHorizontalFlip per image:
    every image gets its own offsets and its own coin flip.
    """
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n, 1, 1), device=x.device, generator=generator)
    flip = torch.rand(n, 1, 1, device=x.device, generator=generator) < 0.5
    rows = dy + torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    cols = dx + torch.where(flip, w - 1 - cols, cols)
    flat = (rows * (w + 2 * pad) + cols).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return padded.flatten(2).gather(2, flat).view_as(x)


class Normalizer:
    """uint8 -> float, scaled to [0, 1] and standardised per channel."""

    def __init__(self, mean, std, device, dtype=torch.float32):
        self.scale = (1.0 / (255.0 * torch.tensor(std, device=device))).view(1, 3, 1, 1).to(dtype)
        self.shift = (torch.tensor(mean, device=device) / torch.tensor(std, device=device)).view(1, 3, 1, 1).to(dtype)
        self.dtype = dtype

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype) * self.scale - self.shift


def init_batch(x: torch.Tensor, y: torch.Tensor, config: dict, normalize: Normalizer) -> tuple[torch.Tensor, torch.Tensor]:
    """`init_batch` normalised images (and labels) drawn from (x, y) for the probe and data-dependent inits.

    Drawn with its own generator seeded by `seed`, so taking the batch moves no
    other random stream: a trial draws the same weights with or without it.
    """
    g = torch.Generator().manual_seed(config["seed"])
    idx = torch.randperm(len(y), generator=g)[: config["init_batch"]].to(y.device)
    return normalize(x[idx]), y[idx]
