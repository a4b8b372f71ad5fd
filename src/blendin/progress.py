"""Progress of long runs (``eval``, ``diagnose``), right on a terminal and in a log file.

    progress = Progress(sys.stderr)
    progress.update("gsm8k blendin g=0.4 a=auto: 16/100 score 0.250 interventions 10.0%",
                    tokens=1600, total_tokens=10000, log_text="... 8.0 tok/s (200 s, ~1050 s left)")
    progress.end()

On a terminal it is a tqdm bar over *tokens*: the text before it says what is done (samples, score,
interventions), the bar and tqdm's own rate and time left count tokens. Tokens, not samples, because
a batch of 96 rows finishes its short answers first: a bar over samples ran fast, then stood still
for minutes. ``total_tokens`` is an estimate the caller revises at each update (tokens decoded so
far plus those still expected), so the time left is tqdm's arithmetic on the caller's estimate.

Anywhere else (a log file, a pipe: a run in the background with ``--out``) no bar and no ``\\r``:
a whole line for the first update, then at most one every ``every`` seconds, and the last state when
the progress ends. A background run's log is where its user sees how far it is; tqdm's own
``disable=None`` would leave it empty, and its bar would fill it with carriage returns.

``end()`` closes the bar or writes the last line; it does nothing when nothing is open, so it can be
called again in a ``finally`` (an interrupt or an error is then printed on a line of its own).
"""

from __future__ import annotations

import time

BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}, {rate_fmt}"
NO_TOTAL_FORMAT = "{desc} {n_fmt} tok, {elapsed}, {rate_fmt}"  # before any length is known


class Progress:
    """``stream``: where to write (stderr); ``every``: seconds between whole lines in a log.

    >>> import io
    >>> log = io.StringIO()
    >>> progress = Progress(log, every=30)
    >>> for n, now in [(1, 0.0), (2, 10.0), (3, 31.0), (4, 40.0)]:
    ...     progress.update(f"{n}/5", now=now)
    >>> progress.end(); progress.end()
    >>> log.getvalue()
    '1/5\\n3/5\\n4/5\\n'
    """

    def __init__(self, stream, every: float = 30.0):
        self.stream, self.every = stream, every
        isatty = getattr(stream, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self.bar = None  # terminal: the open tqdm bar
        self.logged_at: float | None = None  # log: when the last whole line was written
        self.unlogged: str | None = None  # log: the newest text not written yet

    def update(self, text: str, tokens: int = 0, total_tokens: float | None = None,
               log_text: str | None = None, elapsed: float = 0.0, now: float | None = None) -> None:
        """``text``: what is done so far, before the bar; ``tokens`` decoded so far and
        ``total_tokens`` expected in all (None: not known yet, no bar's end to show); ``log_text``:
        the whole line for a log (default ``text``), which carries its own rate and time left;
        ``elapsed``: seconds the run had gone when this first update came (the bar's clock starts
        there, so its rate counts the tokens over the time they took)."""
        if self.terminal:
            self._bar_update(text, tokens, total_tokens, elapsed)
            return
        line = text if log_text is None else log_text
        now = time.monotonic() if now is None else now
        if self.logged_at is None or now - self.logged_at >= self.every:
            self._write(line + "\n")
            self.logged_at, self.unlogged = now, None
        else:
            self.unlogged = line

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()  # leave=True: the last state stays, and the line is ended
            self.bar = None
        elif self.unlogged is not None:
            self._write(self.unlogged + "\n")
        self.logged_at, self.unlogged = None, None

    def _bar_update(self, text: str, tokens: int, total_tokens: float | None, elapsed: float) -> None:
        from tqdm import tqdm

        total = None if total_tokens is None else max(int(round(total_tokens)), tokens)
        if self.bar is None:
            # smoothing 0: the rate is every token over the whole time, which a batch's bursts (many
            # rows finishing at once) do not swing; the clock starts when the run did. ``initial``
            # draws the bar at the tokens already decoded (not empty); set back to 0 after, so the
            # rate counts them too
            self.bar = tqdm(total=total, initial=tokens, desc=text, unit="tok", file=self.stream, dynamic_ncols=True,
                            leave=True, smoothing=0, mininterval=0.5, bar_format=NO_TOTAL_FORMAT if total is None else BAR_FORMAT)
            self.bar.initial = 0
            self.bar.start_t -= elapsed
            self.bar.last_print_t = self.bar.start_t
        bar = self.bar
        bar.set_description_str(text, refresh=False)
        if total is not None:
            bar.total, bar.bar_format = total, BAR_FORMAT
        if tokens > bar.n:
            bar.update(tokens - bar.n)  # redraws at most every mininterval
        else:
            bar.refresh()  # a sample finished (the text moved) with no new token

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
