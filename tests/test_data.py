"""Toy data sets are seeded and sensible; MNIST loads offline and fails with one clear line."""

from __future__ import annotations

import gzip
import shutil

import pytest
import torch

from flowcore.data import TOY_SETS, DataNotFound, load_mnist, read_idx, toy_data


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
