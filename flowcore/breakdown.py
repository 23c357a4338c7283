"""Where the bits go: a flow's bits/dim split exactly into the terms it is made of.

An image flow's log-density is a sum: a learned dequantiser's log-det (`-log q(u | x)`, see
`flowcore.dequantization`), the pre-processing's log-det, the log-det of each level's
layers, the prior term of each latent factored out at a level, and the prior term of the final
latent. `bits_breakdown` walks the flow's layers once and returns each term in bits/dim,

    term_bits = -term_nats / (D ln 2),    sum of the terms = -log p(x) / (D ln 2),

so a term is what that part of the model costs (negative: what it saves). Glow's learned priors
are bijections onto a standard normal (`flowcore.priors`): their log-det is counted with the
prior term of the latent they standardise, which makes that term the learned Gaussian's own
log-density. The flat latent is `cat(inner, eps)` at every split, so the base distribution's
part of each prior term is the slice of the latent that left the flow at that level. NICE has
one scale: its terms are the pre-processing, its layers and the final latent.

`image_scores` is the score the dashboard shows for an 8-bit image and compares with the test
set: the breakdown averaged over a few fixed draws of dequantisation noise.

References: Dinh et al., Density estimation using Real NVP (arXiv:1605.08803), section 3.6;
Kingma & Dhariwal, Glow (arXiv:1807.03039).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowcore.conditional import ClassConditionalNormal
from flowcore.core import Compose, Flow, StandardLogistic, StandardNormal
from flowcore.layout import channel_halves
from flowcore.preprocess import Logit, Rescale
from flowcore.priors import LearnedPrior, Split

DEQUANTISATION = "learned dequantisation, log q(u|x)"
PRE = "pre-processing (logit)"
SCORE_DRAWS = 4  # dequantisation draws per image of `image_scores` (the same fixed draws for every image)
SCORE_SEED = 0


def _layers(level: int) -> str:
    return f"level {level + 1} log-det"


def _factored(level: int, dims: int) -> str:
    return f"level {level + 1} factored-out latent ({dims} dims)"


def _final(dims: int) -> str:
    return f"final latent ({dims} dims)"


class _Walk:
    """What one pass through the layers collects: log-det terms in nats, and the factored-out sizes."""

    def __init__(self) -> None:
        self.nats: dict[tuple[int, int, str], Tensor] = {}  # (level, order, name) -> (B,)
        self.factored: list[tuple[int, int]] = []  # (level, dims), in the order they leave the flow
        self.pending: dict[int, Tensor] = {}  # level -> prior log-dets (learned Gaussians) of that level
        self.deepest = 0

    def add(self, key: tuple[int, int, str], value: Tensor) -> None:
        self.nats[key] = self.nats[key] + value if key in self.nats else value

    def run(self, module: Any, x: Tensor, level: int) -> Tensor:
        self.deepest = max(self.deepest, level)
        if isinstance(module, Compose):
            for layer in module.steps():
                x = self.run(layer, x, level)
            return x
        if isinstance(module, Split):
            x_keep, x_out = channel_halves(x, module.keep)
            z_keep = self.run(module.inner, x_keep, level + 1)
            params = module._standardize_params(x_keep)
            if params is not None:  # Glow: the learned Gaussian, written as eps = (x - mu) / sigma
                mu, log_sigma = params
                x_out = (x_out - mu) * torch.exp(-log_sigma)
                self.pending[level] = -log_sigma.sum(dim=(1, 2, 3))
            self.factored.append((level, x_out[0].numel()))
            # (B, C/2, H, W) -> (B, C/2 * H * W), after the inner latent, as `Split.forward`
            return torch.cat([z_keep.flatten(1), x_out.flatten(1)], dim=1)
        x, log_det = module(x)
        if isinstance(module, (Logit, Rescale)):
            self.add((-1, 0, PRE), log_det)
        elif isinstance(module, LearnedPrior):
            self.pending[level] = self.pending.get(level, 0) + log_det
        else:
            self.add((level, 0, _layers(level)), log_det)
        return x


def _per_dim_log_prob(base: nn.Module, z: Tensor, y: Tensor | None) -> Tensor | None:
    """`log p(z_i)` of every latent dimension `(B, D)` for the factorised bases, else None."""
    if isinstance(base, StandardNormal):
        return -0.5 * (z.pow(2) + math.log(2 * math.pi))
    if isinstance(base, StandardLogistic):
        return -(nn.functional.softplus(z) + nn.functional.softplus(-z))
    if isinstance(base, ClassConditionalNormal) and y is not None:
        log_scale = base._log_scale()[y]  # (B, D)
        eps = (z - base.mean[y]) * torch.exp(-log_scale)
        return -0.5 * (eps.pow(2) + math.log(2 * math.pi)) - log_scale
    return None


def bits_breakdown(flow: Flow, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
    """The bits/dim of `x` `(B, *flow.shape)` on the `[0, 256)` scale, term by term.

    Returns an ordered mapping from term name to a `(B,)` tensor of bits/dim: the pre-processing,
    then for each level its layers' log-det and the latent it factors out, then the final latent.
    The terms sum to `-flow.log_prob(x) / (D ln 2)` (to float precision). A class-conditional flow
    gives the terms of `log p(x | y)`, for labels `y` `(B,)` or, without them, for each image's
    most likely class (`flow.classify`). Flows whose base does not factorise over dimensions get
    one term for the whole prior.
    """
    walk = _Walk()
    if flow.dequantizer is not None:  # log|det dg/dv| = -log q(u | x): its term is log q, in bits/dim
        x, log_det = flow.dequantizer(x)
        walk.add((-2, 0, DEQUANTISATION), log_det)
    z = walk.run(flow.transform, x, 0)
    z = z.reshape(z.shape[0], -1)
    if flow.classes and y is None:
        y = flow.base.log_prob_all(z).argmax(dim=1)  # log|det| is the same for every class
    elif y is not None:
        y = torch.as_tensor(y, device=z.device).long()
    per_dim = _per_dim_log_prob(flow.base, z, y)
    top = z.shape[1] - sum(d for _, d in walk.factored)
    nats = dict(walk.nats)
    if per_dim is None:  # a base that does not factorise: the prior as one term
        prior = flow.base.log_prob(z, y) if flow.classes else flow.base.log_prob(z)
        for level, value in walk.pending.items():
            nats[(level, 0, _layers(level))] = nats.get((level, 0, _layers(level)), 0) + value
        nats[(walk.deepest + 1, 2, "prior")] = prior
    else:
        end = z.shape[1]
        for level, dims in walk.factored:  # the latent is cat(deeper, eps_level): eps_0 is last
            nats[(level, 1, _factored(level, dims))] = per_dim[:, end - dims : end].sum(1) + walk.pending.pop(level, 0)
            end -= dims
        final = per_dim[:, :top].sum(1) + walk.pending.pop(walk.deepest, 0)
        nats[(walk.deepest, 2, _final(top))] = final
        for level, value in walk.pending.items():  # learned priors elsewhere (none in the shipped models)
            nats[(level, 0, _layers(level))] = nats.get((level, 0, _layers(level)), 0) + value
    scale = -1.0 / (flow.event_dim * math.log(2))
    return {name: value * scale for (_, _, name), value in sorted(nats.items(), key=lambda kv: kv[0][:2])}


def score_noise(shape: tuple[int, ...], draws: int = SCORE_DRAWS, seed: int = SCORE_SEED) -> Tensor:
    """The fixed dequantisation noise of `image_scores`: `(draws, *shape)` uniform in `[0, 1)`."""
    return torch.rand((draws, *shape), generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def image_scores(flow: Flow, images_uint8: Tensor, draws: int = SCORE_DRAWS, seed: int = SCORE_SEED,
                 y: Tensor | None = None, batch_size: int = 256) -> dict[str, Tensor]:
    """`bits_breakdown` of 8-bit images `(N, *flow.shape)` averaged over `draws` fixed noise draws
    (the same for every image, so one image always gets the same score): name -> float64 `(N,)`.

    The terms sum to the image's bits/dim, `mean_u -log p(x + u) / (D ln 2)`: the project's one
    definition (`flowcore.metrics`) with the expectation over the noise taken on fixed draws."""
    noise = score_noise(tuple(flow.shape), draws, seed).to(flow.device)
    dtype = next((p.dtype for p in flow.parameters() if p.is_floating_point()), torch.float32)
    out: dict[str, list[Tensor]] = {}
    per_batch = max(1, batch_size // draws)
    for start in range(0, len(images_uint8), per_batch):
        chunk = images_uint8[start : start + per_batch].to(flow.device, dtype)
        n = len(chunk)
        x = (chunk[None] + noise[:, None].to(dtype)).reshape(draws * n, *flow.shape)  # (draws * n, C, H, W)
        if y is not None:
            labels = torch.as_tensor(y)[start : start + per_batch].repeat(draws)
        elif flow.classes:  # each image's most likely class over all its draws, the same for every draw
            labels = flow.class_log_probs(x).reshape(draws, n, -1).mean(0).argmax(1).repeat(draws)
        else:
            labels = None
        for name, bits in bits_breakdown(flow, x, labels).items():
            out.setdefault(name, []).append(bits.double().reshape(draws, n).mean(0).cpu())
    return {name: torch.cat(parts) for name, parts in out.items()}
