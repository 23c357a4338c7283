"""A class-conditional base distribution: one diagonal Gaussian per class on the latent.

A class-conditional Glow keeps its transform (and its learned priors, written as bijections
onto a standard normal, see `flowcore.priors`) and replaces the fixed N(0, I) base with

    p(z | y) = N(z; mu_y, diag(sigma_y^2)),   y in {0, ..., K-1},

over the whole flat latent: the top latent and every factored-out latent. Composed with the
learned priors this is a class-conditional prior for every level, as in Glow's class-conditional
model (where the top prior's mean and scale are a linear function of the one-hot class), and the
Gaussian-mixture latent of FlowGMM. Bayes' rule with a uniform class prior gives

    log p(x)     = logsumexp_y log p(x | y) - log K
    p(y | x)     = softmax_y log p(x | y)

and `log|det dz/dx|` is the same for every class, so classifying needs one pass of the transform.

References: Kingma & Dhariwal, Glow (arXiv:1807.03039), section 5;
Izmailov et al., Semi-Supervised Learning with Normalizing Flows (arXiv:1912.13025).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_SCALE_BOUND = 5.0  # |log sigma_y| stays below this: float32 cannot overflow


class ClassConditionalNormal(nn.Module):
    """`K` diagonal Gaussians over `R^D`, one per class, starting as N(0, I) for every class."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        if classes < 2:
            raise ValueError(f"a class-conditional prior needs at least 2 classes, got {classes}")
        self.dim = dim
        self.classes = classes
        self.mean = nn.Parameter(torch.zeros(classes, dim))
        self.log_scale = nn.Parameter(torch.zeros(classes, dim))

    def _log_scale(self) -> Tensor:
        return LOG_SCALE_BOUND * torch.tanh(self.log_scale / LOG_SCALE_BOUND)

    def log_prob_all(self, z: Tensor) -> Tensor:
        """`log p(z | y)` for every class: `(B, D) -> (B, K)`."""
        log_scale = self._log_scale()  # (K, D)
        eps = (z[:, None, :] - self.mean) * torch.exp(-log_scale)  # (B, K, D)
        return -0.5 * eps.pow(2).sum(-1) - log_scale.sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)

    def log_prob(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """`log p(z | y)` `(B,)` with labels `y` `(B,)`; without labels the marginal `log p(z)`
        under a uniform class prior."""
        all_classes = self.log_prob_all(z)
        if y is None:
            return torch.logsumexp(all_classes, dim=1) - math.log(self.classes)
        return all_classes.gather(1, check_labels(y, self.classes, len(z)).to(z.device)[:, None])[:, 0]

    def sample(self, y: Tensor, temperature: float = 1.0, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> Tensor:
        """`z = mu_y + T * sigma_y * eps` with `eps ~ N(0, I)`: `(n, D)` for labels `y` `(n,)`."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        y = check_labels(y, self.classes, len(y)).to(self.mean.device)
        gen_device = generator.device if generator is not None else torch.device(device)
        eps = torch.randn((len(y), self.dim), generator=generator, device=gen_device).to(self.mean)
        z = self.mean[y] + temperature * torch.exp(self._log_scale()[y]) * eps
        return z.to(device)


def check_labels(y: Tensor | list[int], classes: int, n: int) -> Tensor:
    """Labels as an int64 tensor `(n,)` with values in `[0, classes)`, or a clear error."""
    y = torch.as_tensor(y)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1 or len(y) != n:
        raise ValueError(f"labels must be {n} integers, got a tensor of shape {tuple(y.shape)} "
                         f"and dtype {y.dtype}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"labels must lie in [0, {classes - 1}], got values from {int(y.min())} "
                         f"to {int(y.max())}")
    return y.long()
