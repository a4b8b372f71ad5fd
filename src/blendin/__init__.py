"""blendin: inference-time alignment by probabilistic model blending (BlendIn) and its baselines.

    from blendin import Blender
    blender = Blender(method="blendin", gamma=0.4)   # embedded Gemma-3-270m base + SmolLM2-135M-Instruct guide
    result = blender("What is 12 * 7?")
    print(result.text, result.intervention_rate)
    results = blender(["What is 2+2?", "Name a color."], batch_size=16)

The same, one level down: ``load_pair(config)``, ``generate(pair, prompt, config)``,
``generate_many(pair, prompts, config, batch_size)`` and ``stream(pair, prompt, config)``.
"""

from .config import BlendConfig, GuideSpec, PromptFormat, RemoteSpec
from .errors import BlendinError, ConfigError, ModelLoadError

__version__ = "0.1.0"
__all__ = [
    "Blender", "BlendConfig", "GuideSpec", "PromptFormat", "RemoteSpec", "BlendinError", "ConfigError", "ModelLoadError",
    "load_pair", "generate", "generate_many", "stream", "Pair",
]


def __getattr__(name):  # heavy modules (torch) load on first use
    if name == "Blender":
        from .blender import Blender

        return Blender
    if name in ("generate", "generate_many", "stream"):
        from . import decoding

        return getattr(decoding, name)
    if name in ("load_pair", "Pair"):
        from . import pair

        return getattr(pair, name)
    raise AttributeError(f"module 'blendin' has no attribute '{name}'")
