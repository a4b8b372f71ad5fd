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
    """``base``/``guide`` may be None when a method does not need them (``base``, ``guide``)."""

    base: object | None
    guide: object | None
    bridge: VocabBridge | None = field(default=None)

    def __post_init__(self):
        if self.bridge is None and self.base is not None and self.guide is not None:
            self.bridge = VocabBridge.build(
                self.guide.tokenizer, self.base.tokenizer, self.guide.vocab_size, self.base.vocab_size
            )
        if self.bridge is not None and self.base is not None:
            # blending happens where the base's distributions are: the guide's are carried there
            self.bridge = self.bridge.to(getattr(self.base, "device", "cpu"))


def check_pair(config: BlendConfig, methods: tuple[str, ...] | None = None) -> None:
    """ModelLoadError if a model that ``config.method`` (or ``methods``) needs cannot be found, naming
    it; converts and loads nothing (``models.check``), so a bad guide fails before the base loads."""
    from .errors import ModelLoadError
    from .models import check

    problems = []
    for role, (spec, remote) in _needed(config, methods).items():
        if remote is None:
            config.placement(role).check()  # --device cuda on a machine without one: before anything loads
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
    loaded = {role: load_model(spec, remote, config.placement(role)) for role, (spec, remote) in _needed(config, methods).items()}
    return Pair(base=loaded.get("base"), guide=loaded.get("guide"))


def _needed(config: BlendConfig, methods) -> dict[str, tuple[str, object]]:
    """{role: (spec, remote)} of the models the methods need, the base first."""
    methods = methods or (config.method,)
    need = {}
    if any(m != "guide" for m in methods):
        need["base"] = (config.base, config.base_remote)
    if any(m != "base" for m in methods):
        need["guide"] = (config.guide, config.guide_remote)
    return need
