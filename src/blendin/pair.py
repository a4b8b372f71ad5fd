"""A base and a guide model, loaded together, with the vocabulary bridge between them.

    pair = load_pair(BlendConfig())            # the embedded Gemma-3-270m + SmolLM2-135M-Instruct
    pair = Pair(base=fake_base, guide=fake_guide)   # any objects with the backends.base interface

Each model runs where ``config.placement(role)`` says; the bridge and the blending live on the base's
device (a model's ``device`` attribute; CPU for remote and scripted models).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    it; converts and loads nothing (``models.check``), so a bad guide fails before the base loads."""
    from .errors import ModelLoadError
    from .models import check

    problems = []
    for role, (spec, remote) in _needed(config, methods).items():
        if remote is None:
            config.placement(_placed(role)).check()  # --device cuda on a machine without one: before anything loads
        try:
            check(spec, tokenizer_only=remote is not None)
        except ModelLoadError as exc:
            problems.append((role, exc))
    if len(problems) == 1:
        raise problems[0][1]
    if problems:  # both at once: a user fixing one should not discover the other afterwards
        raise ModelLoadError("\n".join(f"{role} model: {exc}" for role, exc in problems))


def load_pair(config: BlendConfig, methods: tuple[str, ...] | None = None) -> Pair:
    """Load the models that ``config.method`` (or every method in ``methods``) needs, after checking
    that each can be found (``check_pair``)."""
    from .models import load_model

    check_pair(config, methods)
    loaded = {role: load_model(spec, remote, config.placement(_placed(role))) for role, (spec, remote) in _needed(config, methods).items()}
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
