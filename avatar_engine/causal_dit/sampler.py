"""Few-step flow-matching sampler: x_σ = (1 − σ)·x0 + σ·ε, the model predicts v = ε − x0.

Noise levels come from a shifted schedule σ' = sσ / (1 + (s − 1)σ) over K steps. Two
step rules: Euler on the velocity, or predict x0 and re-noise with fresh noise to the
next σ (consistency / DMD style). Fresh noise is drawn from a generator seeded by
(seed, block, step), so any process layout (TPP) draws exactly the same numbers.
"""
from __future__ import annotations

import torch


def shifted_sigmas(steps: int, shift: float) -> list[float]:
    """K+1 noise levels from 1 to 0: the K the model is evaluated at, then 0."""
    base = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return (shift * base / (1 + (shift - 1) * base)).tolist()


def block_noise(seed: int, block: int, step: int, shape, dtype=torch.float32) -> torch.Tensor:
    """Deterministic Gaussian noise for (block, step); step −1 is the block's starting noise."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + block) * 1024 + step + 1)
    return torch.randn(shape, generator=g, dtype=dtype)


def sampler_step(rule: str, x, velocity, sigma: float, sigma_next: float, fresh_noise=None):
    if rule == "euler":
        return x + (sigma_next - sigma) * velocity
    if rule == "x0_renoise":
        x0 = x - sigma * velocity
        return x0 if sigma_next == 0 else (1 - sigma_next) * x0 + sigma_next * fresh_noise
    raise ValueError(f"step rule must be euler or x0_renoise, got {rule!r}")
