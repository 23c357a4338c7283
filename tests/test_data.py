"""Toy data sets are seeded and sensible; MNIST and Fashion-MNIST load offline and fail with one clear line."""

from __future__ import annotations

import dataclasses
import gzip
import shutil

import pytest
import torch

from flowcore.data import (
    FASHION_SYSTEM_DIR,
    IMAGE_SETS,
    TOY_SETS,
    DataNotFound,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    toy_data,
)


@pytest.mark.parametrize("name", sorted(TOY_SETS))
def test_toy_sets_are_seeded_finite_and_centred(name):
    a, b, c = toy_data(name, 2000, seed=1), toy_data(name, 2000, seed=1), toy_data(name, 2000, seed=2)
    assert a.shape == (2000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()
    assert a.abs().max() < 6 and a.std(dim=0).min() > 0.3  # on the dashboard's canvas, not degenerate


def test_unknown_toy_set_names_the_choices():
    with pytest.raises(ValueError, match="moons"):
        toy_data("banana", 10)


def test_mnist_offline_copy_loads(mnist_dir):
    x, y = load_mnist("test", mnist_dir, download=False)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == torch.uint8
    assert y.shape == (10000,) and set(y.unique().tolist()) == set(range(10))
    assert 30 < x.float().mean() < 37  # MNIST's mean grey level is about 33


def test_mnist_from_environment_variable_and_torchvision_layout(mnist_dir, tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_dir / f"{stem}.gz") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    monkeypatch.setenv("FLOWCORE_DATA_DIR", str(tmp_path))
    x, y = load_mnist("test", download=False)
    assert x.shape == (10000, 1, 28, 28) and len(y) == 10000


def test_missing_mnist_gives_one_line_with_the_fix(tmp_path):
    with pytest.raises(DataNotFound) as err:
        load_mnist("train", tmp_path, download=False)
    message = str(err.value)
    assert "\n" not in message and "--data-dir" in message and "FLOWCORE_DATA_DIR" in message


def test_failed_download_gives_one_line(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataNotFound, match="download failed"):
        load_mnist("test", tmp_path, download=True)


def test_truncated_idx_file_is_reported(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + b"\0" * 100)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)


# --- Fashion-MNIST ------------------------------------------------------------------------------


def write_idx(folder, split, value, n=3, gz=False):
    """Tiny IDX image and label files for `split` in `folder`: `n` images, every pixel `value`."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = "train" if split == "train" else "t10k"
    images = bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes([value]) * (n * 784)
    labels = bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(range(n))
    for name, raw in ((f"{stem}-images-idx3-ubyte", images), (f"{stem}-labels-idx1-ubyte", labels)):
        if gz:
            with gzip.open(folder / f"{name}.gz", "wb") as f:
                f.write(raw)
        else:
            (folder / name).write_bytes(raw)


@pytest.fixture
def no_system_fashion(monkeypatch, tmp_path):
    """Fashion-MNIST's system folder pointed at an empty place, so only the data directory counts."""
    info = dataclasses.replace(IMAGE_SETS["fashion-mnist"], system_dirs=(tmp_path / "no-debian-package",))
    monkeypatch.setitem(IMAGE_SETS, "fashion-mnist", info)


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_idx_files_load_plain_or_gzipped(tmp_path, no_system_fashion, gz):
    write_idx(tmp_path / "fashion-mnist", "test", value=7, n=4, gz=gz)
    x, y = load_fashion_mnist("test", tmp_path, download=False)
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.uint8 and (x == 7).all()
    assert y.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("layout", [(".", "fashion-mnist"), ("MNIST/raw", "FashionMNIST/raw")])
def test_mnist_and_fashion_side_by_side_each_loader_gets_its_own(tmp_path, no_system_fashion, layout):
    write_idx(tmp_path / layout[0], "train", value=1, n=2)  # the same file names, different contents
    write_idx(tmp_path / layout[1], "train", value=2, n=5)
    digits, _ = load_mnist("train", tmp_path, download=False)
    clothes, _ = load_fashion_mnist("train", tmp_path, download=False)
    assert len(digits) == 2 and (digits == 1).all()
    assert len(clothes) == 5 and (clothes == 2).all()


def test_fashion_from_the_debian_package_folder(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    write_idx(debian, "test", value=9, n=3, gz=True)  # the package ships .gz files
    info = dataclasses.replace(IMAGE_SETS["fashion-mnist"], system_dirs=(debian,))
    monkeypatch.setitem(IMAGE_SETS, "fashion-mnist", info)
    x, _ = load_fashion_mnist("test", tmp_path / "empty-data-dir", download=False)
    assert len(x) == 3 and (x == 9).all()


@pytest.mark.skipif(not FASHION_SYSTEM_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist (.ci/run does)")
def test_installed_fashion_mnist_loads(tmp_path):
    x, y = load_fashion_mnist("test", tmp_path, download=False)
    assert x.shape == (10000, 1, 28, 28) and set(y.unique().tolist()) == set(range(10))
    assert 70 < x.float().mean() < 76  # Fashion-MNIST's mean grey level is about 73 (MNIST's: 33)


def test_missing_fashion_says_what_to_install(tmp_path, no_system_fashion):
    with pytest.raises(DataNotFound) as err:
        load_fashion_mnist("train", tmp_path, download=False)
    message = str(err.value)
    assert "\n" not in message and "Fashion-MNIST" in message
    assert "apt-get install dataset-fashion-mnist" in message and "fashion-mnist/" in message
