"""The notebook API: load a pair once, then call it.

    from blendin import Blender
    blender = Blender()                                   # embedded pair, BlendIn, gamma 0.4
    Blender(base="Qwen/Qwen3-8B-Base", guide="Qwen/Qwen3-1.7B", device="cuda", dtype="bfloat16")
    Blender(guide=["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"], reliability=True)  # two guides
    result = blender("What is 12 * 7?")                   # -> GenerationResult
    results = blender(["What is 2+2?", "Name a color."])  # -> list, in order, decoded together
    nudged = blender.with_(method="nudging")              # same loaded models, other settings
    blender.with_(turn_stop=False)("...")                 # write on past the base's next "\nQuestion:"
    for step in blender.stream("Why is the sky blue?"): print(step.token, end="")
    Blender(profile="arc.json").ledger.snapshot()         # each guide's record across the answers so far
"""

from __future__ import annotations

from typing import Iterator

from .config import BlendConfig
from .types import GenerationResult, Step


class Blender:
    """A loaded base + guide pair and a ``BlendConfig``; options are BlendConfig's fields."""

    def __init__(self, config: BlendConfig | None = None, pair=None, ledger=None, **options):
        from .profile import Ledger

        config = config or BlendConfig()
        self.ledger = ledger if ledger is not None else Ledger()  # each guide's record across answers (shown, never a weight)
        self.config = config.with_(**options) if options else config
        if pair is None:
            from .pair import load_pair

            pair = load_pair(self.config, methods=("base", "guide"))  # both models: any method later
        self.pair = pair

    def with_(self, **options) -> "Blender":
        """The same models with other settings (another base, guide or guides, device or dtype loads the pair again)."""
        config = self.config.with_(**options)
        if _loaded_as(config) != _loaded_as(self.config):
            return Blender(config)
        return Blender(config, pair=self.pair, ledger=self.ledger)

    def __call__(self, prompt: str | list[str], batch_size: int = 8) -> GenerationResult | list[GenerationResult]:
        from .decoding import generate, generate_many

        if isinstance(prompt, str):
            result = generate(self.pair, prompt, self.config)
            self.ledger.observe(result.guides)
            return result
        results = dict(generate_many(self.pair, prompt, self.config, batch_size=batch_size))
        for r in results.values():
            self.ledger.observe(r.guides)
        return [results[i] for i in range(len(results))]

    def stream(self, prompt: str) -> Iterator[Step]:
        from .decoding import stream

        return stream(self.pair, prompt, self.config)


def _loaded_as(config: BlendConfig) -> tuple:
    """What the loaded models depend on: which they are, where they run, in which precision, and remotes."""
    return (config.base, config.guides, config.placement("base"), config.placement("guide"), config.base_remote)
