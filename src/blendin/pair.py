"""A base and a guide model, loaded together, with the vocabulary bridge between them.

    pair = load_pair(BlendConfig())            # the embedded Gemma-3-270m + SmolLM2-135M-Instruct
    pair = Pair(base=fake_base, guide=fake_guide)   # any objects with the backends.base interface

Each model runs where ``config.placement(role)`` says; the bridge and the blending live on the base's
device (a model's ``device`` attribute; CPU for remote and scripted models).

    speculation_problem(config, pair)   # None, or the line saying why this pair cannot draft as --speculate asks
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

from .config import BlendConfig
from .vocab import VocabBridge


@dataclass
class Pair:
    """``base``/``guide`` may be None when a method does not need them (``base``, ``guide``).

    ``more_guides``: any further guides, each with its own bridge into the base vocabulary
    (``guides``/``bridges`` list them all, the first guide first)."""

    base: object | None
    guide: object | None
    bridge: VocabBridge | None = field(default=None)
    more_guides: list = field(default_factory=list)
    more_bridges: list = field(default_factory=list)

    def __post_init__(self):
        if self.bridge is None and self.base is not None and self.guide is not None:
            self.bridge = _bridge(self.guide, self.base)
        if self.bridge is not None and self.base is not None:
            # blending happens where the base's distributions are: the guide's are carried there
            self.bridge = self.bridge.to(getattr(self.base, "device", "cpu"))
        if self.base is not None and len(self.more_bridges) < len(self.more_guides):
            self.more_bridges = [_bridge(g, self.base).to(getattr(self.base, "device", "cpu")) for g in self.more_guides]

    @property
    def guides(self) -> list:
        return [g for g in (self.guide, *self.more_guides) if g is not None]

    @property
    def bridges(self) -> list:
        return [b for b in (self.bridge, *self.more_bridges) if b is not None]


def _bridge(guide, base) -> VocabBridge:
    return VocabBridge.build(guide.tokenizer, base.tokenizer, guide.vocab_size, base.vocab_size)


def check_pair(config: BlendConfig, methods: tuple[str, ...] | None = None) -> None:
    """ModelLoadError if a model that ``config.method`` (or ``methods``) needs cannot be found, naming
    it; converts and loads nothing (``models.check``), so a bad guide fails before the base loads.
    ConfigError if the pair cannot draft as ``config.speculate`` asks (``speculation_problem``), found
    from the config and, for ``--speculate guide``, the two tokenizers alone (no weights)."""
    from .errors import ModelLoadError
    from .models import check

    problems = []
    for role, (spec, remote) in _needed(config, methods).items():
        llama = remote is None and config.backend_for(_placed(role)) == "llama.cpp"
        if remote is None and not llama:
            config.placement(_placed(role)).check()  # --device cuda on a machine without one: before anything loads
        try:
            check(spec, tokenizer_only=remote is not None, gguf=llama)
        except ModelLoadError as exc:
            problems.append((role, exc))
    if len(problems) == 1:
        raise problems[0][1]
    if problems:  # both at once: a user fixing one should not discover the other afterwards
        raise ModelLoadError("\n".join(f"{role} model: {exc}" for role, exc in problems))
    _check_speculation(config, methods or (config.method,))


def load_pair(config: BlendConfig, methods: tuple[str, ...] | None = None) -> Pair:
    """Load the models that ``config.method`` (or every method in ``methods``) needs, after checking
    that each can be found (``check_pair``)."""
    from .models import load_model

    check_pair(config, methods)
    loaded = {role: load_model(spec, remote, config.placement(_placed(role)), config.backend_for(_placed(role)),
                                   config.threads, config.context)
              for role, (spec, remote) in _needed(config, methods).items()}
    more = [loaded[role] for role in loaded if role.startswith("guide ")]
    return Pair(base=loaded.get("base"), guide=loaded.get("guide"), more_guides=more)


def guide_role(k: int) -> str:
    """The role name of guide ``k`` (0-based) where models are named by role: 'guide', 'guide 2', ..."""
    return "guide" if k == 0 else f"guide {k + 1}"


def _placed(role: str) -> str:
    """The placement role of a model role: every guide ('guide', 'guide 2', ...) runs where the guide does."""
    return "guide" if role.startswith("guide") else role


def _needed(config: BlendConfig, methods) -> dict[str, tuple[str, object]]:
    """{role: (spec, remote)} of the models the methods need, the base first, then the guides
    ('guide', 'guide 2', ...)."""
    methods = methods or (config.method,)
    need = {}
    if any(m != "guide" for m in methods):
        need["base"] = (config.base, config.base_remote)
    if any(m != "base" for m in methods):
        for k, g in enumerate(config.guides):
            need[guide_role(k)] = (g.model, g.remote)
    return need


# -- speculative decoding: can this pair draft as ``config.speculate`` asks? -------------------

def speculation_problem(config: BlendConfig, pair: Pair) -> str | None:
    """Why ``pair`` (loaded) cannot draft as ``config.speculate`` asks for a row of ``config.method``,
    as one line ending in what to change; None where it can (``off``; ``auto``, which drafts with
    what there is; a method without the base or, under ``guide``, without a guide: such a row drafts
    nothing, so a server's base requests and an eval grid's base rows go on). ``speculative.drafter_for``
    refuses a row with this; ``blendin serve`` refuses to start with it."""
    mode = config.speculate
    if mode in ("off", "auto") or not config.uses_base or pair.base is None:
        return None
    if not getattr(pair.base, "drafts", False):
        return _base_cannot(mode, pair.base.name)
    if mode != "guide" or not config.uses_guide:  # a row that consults no guide drafts nothing: no fault of the pair
        return None
    why = _why_guide_cannot(config, pair)
    return _guide_cannot(why) if why else None


def guide_can_draft(config: BlendConfig, pair: Pair) -> bool:
    """Whether the first guide can draft for a row of ``config.method`` (what ``auto`` weighs): the
    base runs and reads drafts, the method consults a guide, one tokenizer, the guide reads drafts."""
    base_reads = config.uses_base and pair.base is not None and getattr(pair.base, "drafts", False)
    return bool(base_reads) and _why_guide_cannot(config, pair) is None


def _why_guide_cannot(config: BlendConfig, pair: Pair) -> str | None:
    guides = pair.guides if config.uses_guide else []
    if not guides:
        return "the method consults no guide"
    if not pair.bridges[0].identity:
        return _ACROSS
    if not getattr(guides[0], "drafts", False):
        return _served(guides[0].name)
    return None


_ACROSS = "the guide has another tokenizer than the base"


def _base_cannot(mode: str, name: str) -> str:
    return (f"--speculate {mode} needs a base that scores drafted tokens in one pass (a local model); "
            f"'{name}' does not: use --speculate off")


def _guide_cannot(why: str) -> str:
    return (f"--speculate guide drafts with the guide in the base's own vocabulary, and {why}; "
            "use --speculate lookup (any pair) or auto")


def _served(name: str) -> str:
    return f"the guide '{name}' cannot read drafted tokens (a model on a server)"


def _check_speculation(config: BlendConfig, methods: tuple[str, ...]) -> None:
    """``speculation_problem`` before anything loads: from the config where a model is on a server
    (it never reads drafts), else, for ``--speculate guide``, by comparing the two tokenizers."""
    from .errors import ConfigError

    mode = config.speculate
    if mode in ("off", "auto") or all(m == "guide" for m in methods):
        return  # nothing drafts: the base never runs
    if config.base_remote is not None:
        raise ConfigError(_base_cannot(mode, config.base))
    if mode != "guide":
        return
    if all(m in ("base", "guide") for m in methods):  # no row both runs the base and consults a guide
        raise ConfigError(_guide_cannot("the method consults no guide"))
    if config.guide_remote is not None:
        raise ConfigError(_guide_cannot(_served(config.guide)))
    if _vocabulary(config.base) != _vocabulary(config.guide):  # VocabBridge.build's test of one tokenizer
        raise ConfigError(_guide_cannot(_ACROSS))


@lru_cache(maxsize=8)
def _vocabulary(spec: str) -> str:
    """A digest of the pieces of ``spec``'s tokenizer, loaded alone (no weights; an embedded model is
    converted first, once, as its load would). Cached: the CLI checks, then ``load_pair`` does."""
    from .models import load_tokenizer

    tok = load_tokenizer(spec, "to compare it with the other model's for --speculate guide")
    return hashlib.sha256(repr(tok.pieces()).encode()).hexdigest()
