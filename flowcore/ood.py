"""Out-of-distribution detection with a flow's likelihood: simple outlier sets, four detectors, ROC/AUROC.

A flow trained on one image set gives every image an exact likelihood, yet a Glow trained on
Fashion-MNIST gives MNIST digits *higher* likelihood than Fashion-MNIST's own test images
(Nalisnick et al. 2019). This module holds the maths behind the dashboard's Out of distribution
page: outlier images anyone can picture, per-image scores, the detectors, and AUROC.

Every detector here returns an *outlier score*: higher means "looks out of distribution".
`auroc(inliers, outliers)` is the probability that an outlier scores higher than an inlier
(ties count half); below 0.5 the detector ranks outliers as *more* in-distribution, and is
reported as measured, never flipped.

References:
    Nalisnick et al., Do Deep Generative Models Know What They Don't Know? (arXiv:1810.09136).
    Nalisnick et al., Detecting Out-of-Distribution Inputs to Deep Generative Models Using
    Typicality (arXiv:1906.02994).
    Serrà et al., Input Complexity and Out-of-distribution Detection with Likelihood-based
    Generative Models (arXiv:1909.11480).
    Schirrmeister et al., Understanding Anomaly Detection with Deep Invertible Networks through
    Hierarchies of Distributions and Features (NeurIPS 2020, arXiv:2006.10848).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowcore.breakdown import bits_breakdown
from flowcore.core import Flow

# --- Outlier images ----------------------------------------------------------------------


def constant_images(shape: tuple[int, int, int] = (1, 28, 28)) -> Tensor:
    """One image per grey level, all pixels equal: `(256, *shape)` uint8, black (0) to white (255)."""
    return torch.arange(256, dtype=torch.uint8).view(256, 1, 1, 1).expand(256, *shape).contiguous()


def uniform_noise(n: int, seed: int, shape: tuple[int, int, int] = (1, 28, 28)) -> Tensor:
    """`n` images of independent uniform pixels in 0..255: `(n, *shape)` uint8, seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=generator, dtype=torch.uint8)


def inverted(images: Tensor) -> Tensor:
    """`255 - x`: white background, dark strokes."""
    return 255 - images


SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


def shifted(images: Tensor, pixels: int, seed: int) -> Tensor:
    """Each image moved by `pixels` in one of 8 directions (up, down, left, right, diagonals; drawn
    per image with `seed`); what enters the frame is black (0), what leaves it is lost."""
    directions = np.random.default_rng(seed).integers(0, len(SHIFTS), len(images))
    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    for i, k in enumerate(directions):
        dy, dx = SHIFTS[k][0] * pixels, SHIFTS[k][1] * pixels
        out[i, ..., max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
            images[i, ..., max(-dy, 0): h + min(-dy, 0), max(-dx, 0): w + min(-dx, 0)]
    return out


# --- Per-image scores --------------------------------------------------------------------


def dequantize_seeded(images: Tensor, seeds: np.ndarray | list[int]) -> Tensor:
    """8-bit images + uniform noise in [0, 1), image `i` drawn from its own seed `seeds[i]`.

    Per-image seeds make any subset reproducible: image 17 gets the same noise whether it is
    scored alone, in a batch of 500, or in another process."""
    if len(seeds) != len(images):
        raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
    noise = torch.stack([torch.rand(images.shape[1:], generator=torch.Generator().manual_seed(int(s)))
                         for s in seeds]) if len(images) else torch.zeros(images.shape)
    return images.to(torch.float32) + noise


TOTAL = "total"  # the key of the image's bits/dim in `score_images`


@torch.inference_mode()
def score_images(flow: Flow, images: Tensor, seeds: np.ndarray, batch_size: int = 250) -> dict[str, np.ndarray]:
    """The exact bits breakdown of every image (`flowcore.bits_breakdown`), one dequantisation draw
    from the image's own seed: term name -> `(N,)` float64 bits/dim, in the breakdown's order, then
    `TOTAL`, their sum (the image's bits/dim)."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        x = dequantize_seeded(images[start: start + batch_size], seeds[start: start + batch_size])
        terms = bits_breakdown(flow, x.to(flow.device))
        terms[TOTAL] = sum(terms.values())
        for name, bits in terms.items():
            parts.setdefault(name, []).append(bits.double().cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def coarsest_level_terms(names: list[str]) -> list[str]:
    """The terms of a breakdown that belong to the coarsest level of a multi-scale flow: its
    layers' log-det and the final latent's prior term. Empty for single-scale flows (NICE), whose
    breakdown factors nothing out."""
    if not any("factored-out" in name for name in names):
        return []
    levels = [int(m.group(1)) for m in map(_LEVEL.match, names) if m]
    coarsest = f"level {max(levels)} " if levels else None
    return [n for n in names if n.startswith("final latent") or (coarsest and n.startswith(coarsest))]


_LEVEL = re.compile(r"level (\d+) ")


def last_scale_bits(terms: dict[str, np.ndarray]) -> np.ndarray | None:
    """Bits/dim the coarsest level accounts for (Schirrmeister et al. 2020's "last scale"): the sum
    of `coarsest_level_terms`, on the whole image's per-dimension scale; None for single-scale flows."""
    names = coarsest_level_terms([n for n in terms if n != TOTAL])
    return np.sum([terms[n] for n in names], axis=0) if names else None


def png_bits_per_dim(images: Tensor) -> np.ndarray:
    """Length in bits of each image saved as an 8-bit greyscale PNG (zlib level 9), per pixel: `(N,)`.

    A general-purpose compressor's estimate of an image's complexity (Serrà et al. 2020)."""
    from PIL import Image

    out = np.empty(len(images))
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image.reshape(image.shape[-2:]).numpy()).save(buffer, format="PNG", compress_level=9)
        out[i] = 8 * buffer.tell() / image.numel()
    return out


# --- Detectors: outlier scores, higher = more out of distribution -------------------------


def likelihood_score(bits_per_dim: np.ndarray) -> np.ndarray:
    """The likelihood itself: bits/dim (minus the log-likelihood, scaled), higher = less likely."""
    return np.asarray(bits_per_dim, dtype=np.float64)


def complexity_score(bits_per_dim: np.ndarray, compressed_bits_per_dim: np.ndarray) -> np.ndarray:
    """Serrà et al. (2020)'s S(x) = -log2 p(x) - L(x) per dimension: bits/dim minus the compressed
    length in bits/dim. Simple images (which every model finds likely) lose their head start."""
    return np.asarray(bits_per_dim, dtype=np.float64) - np.asarray(compressed_bits_per_dim, dtype=np.float64)


def batches(n: int, size: int, seed: int) -> np.ndarray:
    """Indices of `n // size` batches of `size` drawn without replacement: `(n // size, size)`."""
    order = np.random.default_rng(seed).permutation(n)
    return order[: n // size * size].reshape(-1, size)


def typicality_score(bits_per_dim: np.ndarray, typical: float, size: int, seed: int) -> np.ndarray:
    """Nalisnick et al. (2019)'s typicality test statistic for each batch of `size` images: the
    distance `|mean bits/dim of the batch - typical|`, where `typical` is the model's mean bits/dim
    on images it was trained on (or a validation split), never the set being scored.

    Batches are drawn without replacement (`batches(len(bits_per_dim), size, seed)`): `(n // size,)`."""
    bits = np.asarray(bits_per_dim, dtype=np.float64)
    return np.abs(bits[batches(len(bits), size, seed)].mean(axis=1) - typical)


# --- ROC and AUROC -----------------------------------------------------------------------


def auroc(inliers: np.ndarray, outliers: np.ndarray) -> float:
    """Area under the ROC curve of outlier scores: P(outlier > inlier) + P(tie) / 2.

    The Mann-Whitney U statistic with mid-ranks for ties, the same number as scikit-learn's
    `roc_auc_score` with outliers as the positive class."""
    inliers, outliers = np.asarray(inliers, np.float64), np.asarray(outliers, np.float64)
    if not len(inliers) or not len(outliers):
        raise ValueError("AUROC needs at least one inlier and one outlier score")
    _, where, counts = np.unique(np.concatenate([inliers, outliers]), return_inverse=True, return_counts=True)
    midrank = np.cumsum(counts) - (counts - 1) / 2  # ranks from 1; tied scores share their mean rank
    n_in, n_out = len(inliers), len(outliers)
    rank_sum = midrank[where[n_in:]].sum()
    return float((rank_sum - n_out * (n_out + 1) / 2) / (n_in * n_out))


def roc_curve(inliers: np.ndarray, outliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates (outliers positive) at every threshold, from (0, 0) to (1, 1).

    A point per distinct score `t`, flagging scores `>= t`; the trapezoids under it add up to `auroc`."""
    inliers, outliers = np.sort(np.asarray(inliers, np.float64)), np.sort(np.asarray(outliers, np.float64))
    thresholds = np.unique(np.concatenate([inliers, outliers]))[::-1]
    fpr = (len(inliers) - np.searchsorted(inliers, thresholds, "left")) / len(inliers)
    tpr = (len(outliers) - np.searchsorted(outliers, thresholds, "left")) / len(outliers)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


# --- The statistics file -----------------------------------------------------------------

REFERENCE = "reference"  # the set a model's typical value is estimated on
PNG = "png bits/dim"  # each image's PNG length per pixel


def stat_key(*parts: str) -> str:
    """The name of an array in a statistics file: `model|set|term`, or `set|what`."""
    return "|".join(parts)


def save_statistics(path: str | Path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Arrays and a JSON description in one compressed `.npz` (written whole, then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)
    return path


def read_statistics(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the description of a statistics file; nothing is unpickled."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    return arrays, json.loads(str(arrays.pop("meta")))
