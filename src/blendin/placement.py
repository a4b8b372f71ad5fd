"""Where a local model runs and in which precision: ``--device`` and ``--dtype``.

    Placement("auto", "auto").resolve()       # (device('cuda', 0), torch.bfloat16) on a GPU machine
    Placement("cpu", "bfloat16").resolve()    # (device('cpu'), torch.bfloat16)

device: auto | cpu | cuda | cuda:N. ``auto`` takes the first GPU when torch sees one, else the CPU.
dtype:  auto | float32 | bfloat16 | float16. ``auto`` is bfloat16 on a GPU that supports it (float16
        on an older one) and float32 on the CPU: measured on this project's machine (docs/benchmarks.md, "Precision"),
        bfloat16 on a CPU without bfloat16 instructions is 1.7x faster for one prompt but 0.6x for a
        batch of 16, and BlendIn's greedy answers part from float32's (after 69 tokens on average).

Names are checked when a config is built (``check_names``, no torch needed); whether the machine has
the device is checked before any model loads (``Placement.check``). Remote models ignore both: the
server decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ConfigError, did_you_mean

DTYPES = ("auto", "float32", "bfloat16", "float16")
ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}  # as vLLM and torch users write them


def dtype_name(dtype):
    """The canonical name of a dtype a user wrote ('bf16' -> 'bfloat16'); anything else unchanged."""
    return ALIASES.get(dtype, dtype) if isinstance(dtype, str) else dtype


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_names(device: str, dtype: str, flag: str = "device") -> None:
    """ConfigError naming the value and the choices, for a device or dtype that is not one blendin knows."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ConfigError(f"{flag} must be auto, cpu, cuda or cuda:N (a GPU's index), got {device!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"{flag.replace('device', 'dtype')} must be one of {', '.join(DTYPES)}, got {dtype!r}"
                          f"{did_you_mean(str(dtype), DTYPES)}")


@dataclass(frozen=True)
class Placement:
    """A model's device and dtype, as the user named them (``auto`` resolved by ``resolve``)."""

    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        check_names(self.device, self.dtype)

    def resolve(self):
        """(torch.device, torch.dtype) on this machine; ConfigError if the device is not here."""
        import torch

        self.check()
        if self.device == "auto":
            device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
        else:
            device = torch.device(self.device)
            if device.type == "cuda" and device.index is None:
                device = torch.device("cuda", torch.cuda.current_device())
        return device, self._dtype(device)

    def _dtype(self, device):
        import torch

        if self.dtype != "auto":
            return getattr(torch, self.dtype)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32

    def check(self) -> None:
        """ConfigError, naming the fix, if this machine lacks the device or the device the dtype."""
        import torch

        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                build = "a CPU-only build of torch" if torch.version.cuda is None else f"torch with CUDA {torch.version.cuda}, but no GPU is visible"
                raise ConfigError(f"--device {self.device}: this machine has no CUDA GPU for torch ({torch.__version__}: {build}); "
                                  "use --device cpu, or --device auto to take a GPU only where there is one")
            index = int(self.device.split(":")[1]) if ":" in self.device else 0
            if index >= torch.cuda.device_count():
                n = torch.cuda.device_count()
                raise ConfigError(f"--device {self.device}: this machine has {n} GPU{'s' if n != 1 else ''} "
                                  f"(cuda:0{f'..cuda:{n - 1}' if n > 1 else ''})")
            if self.dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
                raise ConfigError(f"--dtype bfloat16: {torch.cuda.get_device_name(index)} has no bfloat16 support; use --dtype float16 or float32")

    def describe(self) -> dict:
        """{"device": "cuda:0", "dtype": "bfloat16"}: what ``auto`` became here."""
        device, dtype = self.resolve()
        return {"device": str(device), "dtype": str(dtype).removeprefix("torch.")}
