"""Choosing a token from a distribution: greedy, or seeded sampling with temperature and top-p.

    >>> Sampler().choose(torch.tensor([0.1, 0.6, 0.3]))
    1

Sampling with the same seed and the same distributions gives the same tokens (on one device: a GPU
draws from its own generator, seeded alike).
"""

from __future__ import annotations

import os

import torch


class Sampler:
    """Owns the random generator of one generation. temperature 0 is greedy (top_p is then unused)."""

    def __init__(self, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None):
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed if seed is not None else int.from_bytes(os.urandom(7), "little")
        self._generators: dict[torch.device, torch.Generator] = {}  # one per device drawn on, seeded once

    def _generator(self, device: torch.device) -> torch.Generator:
        """The generator for ``device``: a model on a GPU draws there; a pair split across devices keeps
        one stream per device (not re-seeded at each switch, which would repeat the draws)."""
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
            self._generators[device].manual_seed(self.seed)
        return self._generators[device]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def choose(self, probs: torch.Tensor) -> int:
        """A token id drawn from ``probs`` (shape [V], any vocabulary). Does not modify ``probs``."""
        if self.greedy:
            return int(torch.argmax(probs))
        logits = torch.log(probs) / self.temperature
        tempered = torch.softmax(logits, dim=-1)
        if self.top_p < 1.0:
            tempered = nucleus(tempered, self.top_p)
        return int(torch.multinomial(tempered, 1, generator=self._generator(tempered.device)))


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose mass reaches top_p; renormalise.

    >>> nucleus(torch.tensor([0.5, 0.3, 0.2]), 0.7).tolist()
    [0.625, 0.375, 0.0]
    """
    sorted_probs, order = torch.sort(probs, descending=True)
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass strictly above each token
    keep_sorted = before < top_p
    keep = torch.zeros_like(keep_sorted).scatter(0, order, keep_sorted)
    kept = torch.where(keep, probs, torch.zeros_like(probs))
    return kept / kept.sum()
