"""blendin: inference-time alignment by probabilistic model blending (BlendIn) and its baselines.

    from blendin import BlendConfig, load_pair, generate
    config = BlendConfig(method="blendin", gamma=0.4)
    pair = load_pair(config)                   # embedded Gemma-3-270m base + SmolLM2-135M-Instruct guide
    result = generate(pair, "What is 12 * 7?", config)
    print(result.text, result.intervention_rate)
"""

from .config import BlendConfig, PromptFormat
from .errors import BlendinError, ConfigError, ModelLoadError

__version__ = "0.1.0"
__all__ = ["BlendConfig", "PromptFormat", "BlendinError", "ConfigError", "ModelLoadError", "load_pair", "generate", "stream", "Pair"]


def __getattr__(name):  # heavy modules (torch) load on first use
    if name in ("generate", "stream"):
        from . import decoding

        return getattr(decoding, name)
    if name in ("load_pair", "Pair"):
        from . import pair

        return getattr(pair, name)
    raise AttributeError(f"module 'blendin' has no attribute '{name}'")
