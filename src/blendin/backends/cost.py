"""What a model's pass costs on this machine, measured by its runner (read by ``--speculate auto``)."""

from __future__ import annotations


class PassCost:
    """What a model's pass costs on this machine, measured: seconds = fixed + per_token x tokens read,
    a least-squares line through its passes of one row reading at most ``MAX_TOKENS`` tokens (decode
    and verifying passes: what a draft changes; prompt reads are left out), older passes fading
    (weight ``FADE`` a pass). Before two lengths are seen per_token is 0, as where a few more tokens
    ride along in a pass (a GPU).

    >>> c = PassCost(); c.add(1, 0.5); c.add(9, 1.5); round(c.seconds(5), 6)
    1.0
    """

    MAX_TOKENS = 16
    FADE = 0.98

    def __init__(self):
        self._sums = (0.0, 0.0, 0.0, 0.0, 0.0)  # weight, w*tokens, w*tokens^2, w*seconds, w*tokens*seconds

    def add(self, tokens: int, seconds: float) -> None:
        if tokens <= self.MAX_TOKENS:
            self._sums = tuple(x * self.FADE + y for x, y in zip(self._sums, (1, tokens, tokens * tokens, seconds, tokens * seconds)))

    @property
    def measured(self) -> bool:
        return self._sums[0] > 0

    def seconds(self, tokens: int) -> float:
        w, t, tt, s, ts = self._sums
        if not w:
            raise ValueError("no pass measured yet")
        mean_t, mean_s = t / w, s / w
        spread = tt / w - mean_t * mean_t
        slope = max(0.0, (ts / w - mean_t * mean_s) / spread) if spread > 1e-9 else 0.0
        return max(1e-6, mean_s + slope * (tokens - mean_t))
