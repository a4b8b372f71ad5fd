"""A base and a guide model, loaded together, with the vocabulary bridge between them.

    pair = load_pair(BlendConfig())            # the embedded Gemma-3-270m + SmolLM2-135M-Instruct
    pair = Pair(base=fake_base, guide=fake_guide)   # any objects with the backends.base interface
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


def load_pair(config: BlendConfig, methods: tuple[str, ...] | None = None) -> Pair:
    """Load the models that ``config.method`` (or every method in ``methods``) needs."""
    from .models import load_model

    methods = methods or (config.method,)
    need_base = any(m != "guide" for m in methods)
    need_guide = any(m != "base" for m in methods)
    base = load_model(config.base, config.base_remote) if need_base else None
    guide = load_model(config.guide, config.guide_remote) if need_guide else None
    return Pair(base=base, guide=guide)
