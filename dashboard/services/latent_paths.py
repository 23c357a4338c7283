"""Paths between two latent codes, for interpolation: a straight line, or a great circle.

A flow's latent codes of typical data lie near a sphere (most of a Gaussian's mass is at radius
about sqrt(D)); the straight line between two of them dips towards the centre, where no data
lives, while the great circle (scaled in norm from one end's to the other's) stays at a typical
distance from it.
"""

from __future__ import annotations

import torch

PATHS = ("linear", "spherical")


def latent_path(z0: torch.Tensor, z1: torch.Tensor, steps: int, path: str) -> torch.Tensor:
    """`steps` latents `(steps, D)` from `z0` to `z1` `(D,)`: straight line, or great circle
    (slerp) scaled in norm."""
    t = torch.linspace(0, 1, steps, dtype=z0.dtype)[:, None]
    if path == "linear":
        return (1 - t) * z0 + t * z1
    if path != "spherical":
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    n0, n1 = z0.norm(), z1.norm()
    u0, u1 = z0 / n0.clamp_min(1e-12), z1 / n1.clamp_min(1e-12)
    omega = torch.arccos((u0 @ u1).clamp(-1.0, 1.0))
    if omega.abs() < 1e-4:  # (nearly) parallel: the great circle is the straight line
        return (1 - t) * z0 + t * z1
    direction = (torch.sin((1 - t) * omega) * u0 + torch.sin(t * omega) * u1) / torch.sin(omega)
    return direction * ((1 - t) * n0 + t * n1)
