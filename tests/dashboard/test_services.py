"""The services behind the pages: upload parsing, latent paths, the pretrained catalogue."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from dashboard.services import catalogue, compare, latent_paths, limits, mnist, uploads


def csv(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode()


GOOD = [f"{i * 0.1},{math.sin(i)}" for i in range(50)]


def test_parses_two_numeric_columns_with_or_without_header() -> None:
    plain = uploads.parse_points_csv(csv(GOOD))
    headed = uploads.parse_points_csv(csv(["x,y", *GOOD]))
    assert plain.shape == (50, 2) and plain.dtype == torch.float32
    assert torch.equal(plain, headed)
    assert plain[3, 0].item() == pytest.approx(0.3)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"   \n\n", "empty"),
    (bytes(range(256)) * 10, "binary"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    (b"x" * (limits.MAX_UPLOAD_BYTES + 1), "limit is 1 MB"),
    (csv(["x,y,z", *[f"{r},0" for r in GOOD]]), "3 column(s)"),
    (csv([str(i) for i in range(50)]), "1 column(s)"),
    (csv(["x,y", *GOOD[:10], "1,banana", *GOOD[10:]]), "banana"),
    (csv([*GOOD, "1,nan"]), "NaN or infinite"),
    (csv([*GOOD, "inf,1"]), "NaN or infinite"),
    (csv([*GOOD, "1,"]), "NaN or infinite"),
    (csv(GOOD[:5]), "at least"),
    (csv(["1,2"] * (limits.MAX_POINTS + 1)), "limit is 5,000"),
    (csv([*GOOD, "1e300,1"]), "larger than a million"),
    (b"a,b\n1,2\n3,4,5,6\n", "could not be read as CSV"),
])
def test_bad_uploads_raise_a_clear_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=None) as info:
        uploads.parse_points_csv(data)
    assert message in str(info.value)


def test_latent_paths_start_and_end_at_the_given_codes() -> None:
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(784, generator=g), torch.randn(784, generator=g) * 2
    for path in latent_paths.PATHS:
        zs = latent_paths.latent_path(z0, z1, 7, path)
        assert zs.shape == (7, 784)
        torch.testing.assert_close(zs[0], z0)
        torch.testing.assert_close(zs[-1], z1)
    linear = latent_paths.latent_path(z0, z1, 7, "linear")
    torch.testing.assert_close(linear[3], (z0 + z1) / 2)
    # spherical: norms interpolate linearly (no dip towards the origin as on the straight line)
    sph = latent_paths.latent_path(z0, z1, 7, "spherical")
    expected = torch.linspace(z0.norm().item(), z1.norm().item(), 7)
    torch.testing.assert_close(sph.norm(dim=1), expected)
    assert linear[3].norm() < sph[3].norm()
    with pytest.raises(ValueError):
        latent_paths.latent_path(z0, z1, 3, "zigzag")


def test_catalogue_reports_what_is_missing(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(tmp_path))
    (tmp_path / "manifest.json").write_text("{not json")
    assert "not a valid manifest" in catalogue.catalogue().problems[0]
    (tmp_path / "manifest.json").write_text(json.dumps({"models": {"glow-mnist": {"file": "g.pt"}}}))
    cat = catalogue.catalogue()
    assert cat.available() == []
    assert any("NICE (nice-mnist) is not listed" in p for p in cat.problems)
    assert any("g.pt` is missing" in p for p in cat.problems)


def test_sample_grid_is_tiled_and_reproducible(pretrained) -> None:
    grid, problem = mnist.sample_grid("glow-mnist", 0.7, 3, 4)
    again, _ = mnist.sample_grid("glow-mnist", 0.7, 3, 4)
    assert problem is None
    side = 4 * (28 + 2) + 2
    assert grid.image.shape == (side * mnist.IMAGE_SCALE, side * mnist.IMAGE_SCALE)
    assert grid.image.dtype.name == "uint8"
    assert (grid.image == again.image).all()
    assert mnist.png_bytes(grid.image).startswith(b"\x89PNG")


def test_shipped_pretrained_models_are_usable(monkeypatch) -> None:
    """The checkpoints in the repository's pretrained/ folder, read as the app reads them."""
    shipped = catalogue.ROOT / "pretrained"
    if not (shipped / "manifest.json").is_file():
        pytest.skip("no pretrained/manifest.json in this checkout")
    monkeypatch.setenv("FLOWCORE_PRETRAINED_DIR", str(shipped))
    cat = catalogue.catalogue()
    assert cat.problems == ()
    assert set(cat.models) == set(catalogue.MODEL_IDS)
    for name in catalogue.MODEL_IDS:
        entry = cat.models[name]
        assert entry.available and entry.test_bits_per_dim and entry.curve and entry.family in catalogue.MODEL_NAMES
        assert bool(entry.published_bits_per_dim) == (name in catalogue.COMPARED)
        assert (entry.test_accuracy is not None) == (name == catalogue.CONDITIONAL)
        grid, problem = mnist.sample_grid(name, 0.7, 0, 2)
        assert problem is None and grid.image.std() > 0


def test_comparison_paragraph_names_each_models_hardware_only_when_they_differ() -> None:
    cat = catalogue.catalogue()
    same = compare.caveats(cat)
    assert "Each was trained once, with one seed, for " in same and " on test stand-in. " in same
    assert "different hardware" not in same
    models = dict(cat.models)
    models["glow-mnist"] = replace(models["glow-mnist"], hardware="NVIDIA H100, then 2-core CPUs (shared)")
    differ = compare.caveats(replace(cat, models=models))
    assert ", on different hardware: NICE on test stand-in; RealNVP on test stand-in; " \
           "Glow on NVIDIA H100, then 2-core CPUs (shared). " in differ
    assert "would be evidence; a gap" in differ  # the closing sentence is complete
