"""Data: seeded 2-D toy sets, MNIST and Fashion-MNIST (offline IDX files, or downloaded by torchvision)."""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DATA_DIR_ENV = "FLOWCORE_DATA_DIR"


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    n1 = n // 2
    t1 = rng.uniform(0, math.pi, n1)
    t2 = rng.uniform(0, math.pi, n - n1)
    upper = np.stack([np.cos(t1), np.sin(t1)], 1)
    lower = np.stack([1 - np.cos(t2), 0.5 - np.sin(t2)], 1)
    x = np.concatenate([upper, lower]) + rng.normal(0, 0.05, (n, 2))
    return (x[rng.permutation(n)] - [0.5, 0.25]) * 2  # shuffled: any prefix holds both moons


def _circles(n: int, rng: np.random.Generator) -> np.ndarray:
    r = np.where(rng.random(n) < 0.5, 1.0, 0.5)
    t = rng.uniform(0, 2 * math.pi, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1) * 2 + rng.normal(0, 0.05, (n, 2))


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    angles = rng.integers(0, 8, n) * (2 * math.pi / 8)
    centres = np.stack([np.cos(angles), np.sin(angles)], 1) * 2
    return centres + rng.normal(0, 0.15, (n, 2))


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    x1 = rng.uniform(-2, 2, n)
    x2 = rng.uniform(0, 1, n) + rng.integers(0, 2, n) * 2 - 2
    x2 = x2 + (np.floor(x1) % 2)
    return np.stack([x1, x2], 1)


def _pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    arms, rate = 5, 0.25
    labels = rng.integers(0, arms, n)
    feats = rng.normal(0, 1, (n, 2)) * [0.3, 0.05] + [1.0, 0.0]
    angles = labels * (2 * math.pi / arms) + rate * np.exp(feats[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    rot = np.stack([np.stack([c, -s], 1), np.stack([s, c], 1)], 1)
    return 2 * np.einsum("ni,nji->nj", feats, rot)


def _two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.sqrt(rng.random(n)) * 3 * math.pi
    sign = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    x = np.stack([-np.cos(t) * t, np.sin(t) * t], 1) * sign[:, None] / 3
    return x + rng.normal(0, 0.1, (n, 2))


def _rings(n: int, rng: np.random.Generator) -> np.ndarray:
    radii = np.array([0.75, 1.5, 2.25, 3.0]) * 0.9
    r = radii[rng.integers(0, 4, n)]
    t = rng.uniform(0, 2 * math.pi, n)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1) + rng.normal(0, 0.06, (n, 2))


def _swiss_roll(n: int, rng: np.random.Generator) -> np.ndarray:
    t = 1.5 * math.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5
    return x + rng.normal(0, 0.1, (n, 2))


TOY_SETS = {
    "moons": _moons,
    "circles": _circles,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "rings": _rings,
    "swissroll": _swiss_roll,
}


def toy_data(name: str, n: int, seed: int = 0) -> Tensor:
    """`n` points `(n, 2)` float32 of a 2-D toy set; the same `seed` gives the same points."""
    if name not in TOY_SETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(TOY_SETS)}")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(seed)
    return torch.from_numpy(TOY_SETS[name](n, rng).astype(np.float32))


def heldout_seed_for(seed: int) -> int:
    """The seed of a toy set's held-out draw when none is given: `seed + 1`."""
    return seed + 1


def toy_split(name: str, n_train: int, n_heldout: int, seed: int = 0,
              heldout_seed: int | None = None) -> tuple[Tensor, Tensor]:
    """Training and held-out points of a toy set: two independent draws, from `seed` and from
    `heldout_seed` (default `seed + 1`), so the held-out points never repeat training points."""
    heldout_seed = heldout_seed_for(seed) if heldout_seed is None else heldout_seed
    return toy_data(name, n_train, seed), toy_data(name, n_heldout, heldout_seed)


# --- MNIST and Fashion-MNIST ------------------------------------------------------------

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist


@dataclass(frozen=True)
class ImageSet:
    """Where one IDX image set is looked for. MNIST and Fashion-MNIST use the same file names,
    so each has folders of its own and never reads the other's."""

    name: str  # as on the command line
    title: str  # as shown to people
    subfolders: tuple[str, ...]  # inside the data directory, in this order
    system_dirs: tuple[Path, ...]  # then these (installed by a system package)
    torchvision_class: str  # the torchvision dataset that downloads it
    install_hint: str  # how to get the files offline


IMAGE_SETS = {
    "mnist": ImageSet("mnist", "MNIST", (".", "MNIST/raw", "raw"), (), "MNIST",
                      "pass --data-dir or set FLOWCORE_DATA_DIR to a folder holding the MNIST IDX files"),
    "fashion-mnist": ImageSet(
        "fashion-mnist", "Fashion-MNIST", ("fashion-mnist", "FashionMNIST/raw"), (FASHION_SYSTEM_DIR,),
        "FashionMNIST",
        "install it with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu), or put the IDX files "
        "in a fashion-mnist/ folder inside --data-dir or $FLOWCORE_DATA_DIR"),
}


class DataNotFound(RuntimeError):
    """An image set is neither on disk nor downloadable; the message says how to fix it."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a uint8 array."""
    path = Path(path)
    raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise ValueError(f"{path} is truncated: expected {math.prod(dims)} values, found {data.size}")
    return data.reshape(dims)


def _find(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The argument if given, else `$FLOWCORE_DATA_DIR`, else `./data`."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or "data")


def load_images(name: str = "mnist", split: str = "train", data_dir: str | os.PathLike | None = None,
                download: bool = True) -> tuple[Tensor, Tensor]:
    """Images `(N, 1, 28, 28)` uint8 and labels `(N,)` int64 of MNIST or Fashion-MNIST.

    Looks for the IDX files (plain or .gz) in the set's folders inside `data_dir` (or
    `$FLOWCORE_DATA_DIR`, else `./data`): MNIST in the folder itself, `MNIST/raw/` or `raw/`;
    Fashion-MNIST in `fashion-mnist/` or `FashionMNIST/raw/`, then in Debian's
    `/usr/share/datasets/fashion-mnist/`. If absent and `download`, torchvision fetches them.
    """
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown image set {name!r}; choose one of {', '.join(IMAGE_SETS)}")
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    info = IMAGE_SETS[name]
    root = resolve_data_dir(data_dir)
    folders = [root / sub for sub in info.subfolders] + list(info.system_dirs)
    images_stem, labels_stem = _FILES[split]
    images, labels = _find(folders, images_stem), _find(folders, labels_stem)
    if (images is None or labels is None) and download:
        try:
            import torchvision

            getattr(torchvision.datasets, info.torchvision_class)(str(root), train=split == "train", download=True)
        except Exception as err:  # noqa: BLE001 - any failure becomes one clear line
            raise DataNotFound(f"{info.title} not found in {root} and the download failed "
                               f"({type(err).__name__}); {info.install_hint}") from None
        images, labels = _find(folders, images_stem), _find(folders, labels_stem)
    if images is None or labels is None:
        raise DataNotFound(f"{info.title} {split} files not found in {root}; {info.install_hint}")
    x = torch.from_numpy(read_idx(images).copy()).unsqueeze(1)
    y = torch.from_numpy(read_idx(labels).astype(np.int64))
    if x.shape[0] != y.shape[0] or x.shape[2:] != (28, 28):
        raise ValueError(f"{info.title} files in {images.parent} are inconsistent: {tuple(x.shape)} images, "
                         f"{len(y)} labels")
    return x, y


def load_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
               download: bool = True) -> tuple[Tensor, Tensor]:
    """MNIST images `(N, 1, 28, 28)` uint8 and labels `(N,)` int64 (see `load_images`)."""
    return load_images("mnist", split, data_dir, download)


def load_fashion_mnist(split: str = "train", data_dir: str | os.PathLike | None = None,
                       download: bool = True) -> tuple[Tensor, Tensor]:
    """Fashion-MNIST images `(N, 1, 28, 28)` uint8 and labels `(N,)` int64 (see `load_images`)."""
    return load_images("fashion-mnist", split, data_dir, download)
