"""Reliability profiles: what a labelled sample proved of each guide, kept in a file, used as weights.

    profile = Profile.load("smollm2-on-arc.json")       # written by blendin diagnose --save-profile
    profile.mismatch(config, task="arc_challenge")      # None, or the field that differs, in words
    profile.reliability("smollm2-135m-instruct")        # r_k in [0, 1]: it multiplies the guide's weight

The rule from evidence to r_k (``reliability``), for one guide: the items of the sample where BlendIn
with this guide and the base alone disagree (one right, the other wrong) are the only ones that say
whether the guidance helps; of those, the blend was right on ``wins`` and the base on ``losses``.
With theta the chance that the blend is the one that is right on such an item (a uniform prior),
``help_probability`` is the posterior P(theta > 1/2 | wins, losses). It is 1/2 with no evidence, near
1 when the blend won most disagreements, near 0 when it lost most. It judges the *blend*, not the
guide alone: a guide worse than the base alone may still mend the base where the base is unsure
(the blend beating both of its members is the method's point), and a guide better than the base
alone may still hurt it. Several guides: a guide's r_k is also multiplied by the probability that
its blend beats each other guide's (the same rule on their disagreements), so of two guides the one
whose guidance proved better keeps its weight and the other fades (confidence at the token still
splits what each may take: the loop's weights times r_k, the base keeping the rest). A guide with
r_k below ``OFF_BELOW`` is not consulted at all: its passes are saved and counted, and a pair whose
every guide is off decodes as the base alone.

The decision printed for each guide reads the same posterior: "helps" at P >= 0.8, "hurts" at
P <= 0.2, else "no clear effect".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

VERSION = 1
OFF_BELOW = 0.1  # a guide weighed less than this is not consulted
HELPS, HURTS = 0.8, 0.2  # the decision's thresholds on P(guidance helps)


def help_probability(wins: int, losses: int) -> float:
    """P(theta > 1/2) for theta ~ Beta(1 + wins, 1 + losses): the binomial tail
    P(Binomial(wins + losses + 1, 1/2) <= wins), exact for whole counts.

    >>> help_probability(0, 0), round(help_probability(46, 15), 4), round(help_probability(2, 11), 4)
    (0.5, 1.0, 0.0065)
    """
    n = wins + losses + 1
    return math.fsum(math.comb(n, j) for j in range(wins + 1)) / 2 ** n


def decision(p_help: float) -> str:
    return "helps" if p_help >= HELPS else "hurts" if p_help <= HURTS else "no clear effect"


@dataclass(frozen=True)
class Profile:
    """A fitted profile: the models and options it holds for, each guide's r_k, and the evidence.

    ``key``: the options the evidence was gathered under, compared with a run's (``mismatch``):
    gamma and alpha (the blend's rule). ``evidence``: per guide, what the sample showed (not part of
    the comparison; written for the reader and for ``blendin diagnose``). ``source``: the file."""

    base: str
    guides: tuple[str, ...]
    reliabilities: tuple[float, ...]
    task: str | None = None
    gamma: float = 0.4
    alpha: float | str = "auto"
    evidence: tuple = field(default=(), compare=False)
    sample: dict = field(default_factory=dict, compare=False)  # the data and items it was fitted on (not a key)
    source: str = field(default="", compare=False)

    def __post_init__(self):
        if len(self.guides) != len(self.reliabilities):
            raise ConfigError(f"a profile needs one reliability per guide: {len(self.guides)} guides, {len(self.reliabilities)} reliabilities")
        for name, r in zip(self.guides, self.reliabilities):
            if not isinstance(r, (int, float)) or isinstance(r, bool) or not 0.0 <= r <= 1.0:
                raise ConfigError(f"the profile's reliability of '{name}' must be a number in [0, 1], got {r!r}")

    def reliability(self, guide: str) -> float:
        """r_k of ``guide``; a guide the profile does not know is refused by ``mismatch`` first."""
        return float(self.reliabilities[self.guides.index(guide)])

    def mismatch(self, config, task: str | None = None) -> str | None:
        """None when this profile holds for ``config`` (and ``task``, where the caller has one), else
        which field differs, with both values. The data file and the sample's size are no part of it:
        a profile fitted on some items of a task is meant for the task's other items."""
        guides = tuple(g.label for g in config.guides)
        for name, mine, theirs in (("base", self.base, config.base), ("guides", self.guides, guides),
                                   ("gamma", self.gamma, config.gamma), ("alpha", self.alpha, config.alpha_label)):
            if mine != theirs:
                return f"{name}: the profile's is {_show(mine)}, this run's {_show(theirs)}"
        if task is not None and self.task is not None and task != self.task:
            return f"task: the profile's is {self.task}, this run's {task}"
        return None

    def to_dict(self) -> dict:
        return {"format": "blendin-profile", "version": VERSION, "base": self.base, "task": self.task,
                "gamma": self.gamma, "alpha": self.alpha, "sample": self.sample,
                "guides": [{"guide": g, "reliability": r, **(e or {})}
                           for g, r, e in zip(self.guides, self.reliabilities, self.evidence or [None] * len(self.guides))]}

    def save(self, path) -> Path:
        """Write the profile as JSON (through a temporary file: a crash never leaves half of one)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path) -> "Profile":
        """Read a profile file; ConfigError naming the problem and the fix for a missing, unreadable
        or foreign file, or one of a newer format."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"--profile {path}: no such file; write one with blendin diagnose ... --save-profile {path}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--profile {path}: not a readable JSON file ({exc}); write it again with blendin diagnose --save-profile") from None
        if not isinstance(d, dict) or d.get("format") != "blendin-profile":
            raise ConfigError(f"--profile {path}: not a blendin profile (no \"format\": \"blendin-profile\"); write one with blendin diagnose --save-profile")
        if d.get("version") != VERSION:
            raise ConfigError(f"--profile {path}: format version {d.get('version')!r}, and this blendin reads version {VERSION}; "
                              "fit it again with this version's blendin diagnose --save-profile")
        try:
            guides = d["guides"]
            return cls(base=d["base"], guides=tuple(g["guide"] for g in guides), reliabilities=tuple(g["reliability"] for g in guides),
                       task=d.get("task"), gamma=d.get("gamma", 0.4), alpha=d.get("alpha", "auto"),
                       evidence=tuple({k: v for k, v in g.items() if k not in ("guide", "reliability")} for g in guides),
                       sample=d.get("sample") or {}, source=str(path))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"--profile {path}: a field is missing or malformed ({exc}); write it again with blendin diagnose --save-profile") from None

    def key(self) -> dict:
        """What an eval's run.json records of the profile a run used (its resume key): the decisions
        and what they were fitted for, not the file's path."""
        return {"base": self.base, "task": self.task, "gamma": self.gamma, "alpha": self.alpha,
                "reliabilities": dict(zip(self.guides, self.reliabilities))}

    def describe(self) -> dict:
        """``key`` with the file it came from (a server's GET /v1/profile, a result's record)."""
        return {"source": self.source, **self.key()}


def _show(value) -> str:
    return ", ".join(value) if isinstance(value, tuple) else repr(value) if isinstance(value, str) else str(value)


class Ledger:
    """Each guide's record across answers (a server's, a ``Blender``'s): answers seen, consultations,
    interventions, passes saved, and the within-answer agreement (``GuideRecord.reliability``)
    averaged over the answers that consulted it. It is shown (GET /v1/profile, /metrics,
    ``Blender.ledger``) and, with ``blendin serve --profile-update``, written into the profile file
    at shutdown under "observed"; it never changes a weight: no label-free signal predicted what a
    guide does for a base well enough (docs/results/reliability-signals.md), so the weights stay
    the profile's, and a batch decodes as its rows would alone.

        >>> ledger = Ledger(); ledger.observe([{"guide": "g", "consulted": 2, "interventions": 2, "reliability": 0.5, "passes_saved": 0}])
        >>> ledger.snapshot()["g"]["mean_agreement"]
        0.5
    """

    FIELDS = ("consulted", "interventions", "passes_saved")

    def __init__(self):
        import threading

        self._lock = threading.Lock()  # a server's rows finish on its decoding thread, requests read on others
        self._guides: dict[str, dict] = {}

    def observe(self, guides) -> None:
        """One finished answer's per-guide stats (``GenerationResult.guides``; None: no guide ran)."""
        with self._lock:
            for g in guides or ():
                t = self._guides.setdefault(g["guide"], {"answers": 0, **{f: 0 for f in self.FIELDS}, "agreement_sum": 0.0, "agreeing_answers": 0})
                t["answers"] += 1
                for f in self.FIELDS:
                    t[f] += g.get(f) or 0
                if g.get("consulted"):
                    t["agreement_sum"] += g["reliability"]
                    t["agreeing_answers"] += 1

    def snapshot(self) -> dict:
        """{guide: answers, consulted, interventions, passes_saved, mean_agreement (None: never consulted)}."""
        with self._lock:
            return {name: {"answers": t["answers"], **{f: t[f] for f in self.FIELDS},
                           "mean_agreement": round(t["agreement_sum"] / t["agreeing_answers"], 6) if t["agreeing_answers"] else None}
                    for name, t in self._guides.items()}

    def write_into(self, path) -> Path:
        """Add this record to the profile file at ``path`` under "observed" (the rest unchanged)."""
        path = Path(path)
        data = json.loads(path.read_text())
        data["observed"] = self.snapshot()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)
        return path
