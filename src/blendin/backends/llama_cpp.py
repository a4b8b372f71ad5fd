"""GGUF models run in-process by llama.cpp (llama-cpp-python's low-level API): full next-token
distributions, a KV cache sequence per session, many sessions in one ``llama_decode`` call.

    model = LlamaCppModel.from_gguf("model.gguf", tokenizer, name="smollm2")
    s = model.session(); s.sync(model.tokenizer.encode_prompt("Question: 2+3?\\nAnswer:"))
    s.logprobs().shape  # torch.Size([49152]): the GGUF's own vocabulary

A llama.cpp context holds several sessions' caches (more contexts as more rows open: 1, 1, 2, 4, 8,
then 16 sequences each, so that memory follows the rows that run), a stream of ``context`` cells per sequence (not ``kv_unified``: measured on the embedded SmolLM2, a unified cache made a batched row's
probabilities differ from the same row alone by up to 0.03, and greedy answers part; a stream per
sequence gives the same numbers to the last bit). A session owns one sequence id while it is open; its cache is kept for the longest common prefix and cut back with ``llama_memory_seq_rm``
(rewind, a draft that missed). A batched pass puts every session's pending tail in one
``llama_batch`` (a sequence id per row, the logits asked only where a row needs them: its last
token, or each drafted token's), so rows of different lengths run together without padding.

The token ids are the GGUF's own, which the tokenizer given must share (an ``HFTokenizer`` converted
from the same file does: ``tests/test_llama_cpp_backend.py`` checks prompts and special tokens).
``--backend llama.cpp`` selects it (``models.load_model``); ``--threads`` and ``--context`` reach it.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time

import numpy as np
import torch

from .base import PrefixSession
from .cost import PassCost

_QUIET = None  # the log callback, kept alive while llama.cpp may call it


def _llama():
    """llama_cpp, imported on first use, its logging silenced (it writes every load to stderr)."""
    global _QUIET
    try:
        import llama_cpp
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("--backend llama.cpp needs llama-cpp-python: pip install 'blendin[llama]' (it builds llama.cpp "
                          "once, about 7 minutes; in a blendin checkout make test does), or use --backend transformers") from None
    if _QUIET is None:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


class LlamaCppModel:
    """A GGUF model on llama.cpp, its sessions' caches in contexts of ``context`` cells a sequence; a
    context is made when the open ones are full, as large as the ones before it together (1, 1, 2, 4,
    8, then ``seqs`` sequences; a batch of 40 rows: six contexts, one ``llama_decode`` each a round),
    so memory follows the rows that run, not a guess of them (one row: one sequence's cells).

    Capabilities: ``full_distribution``, ``batched``, ``drafts``; ``context_length``: a session's cells;
    ``context_flag``: the option that sets it (named by the error of a row that does not fit)."""

    full_distribution = True
    batched = True
    drafts = True
    device = "cpu"
    dtype = torch.float32  # the logits' dtype (the weights stay as quantized in the file)
    context_flag = "--context"

    def __init__(self, llama, model, tokenizer, name: str, context: int, seqs: int, threads: int):
        self._llama, self._model = llama, model
        self.tokenizer, self.name = tokenizer, name
        self.vocab_size = llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(model))
        self.context_length, self.seqs, self.threads = context, seqs, threads
        self._contexts: list[_Context] = []
        self.batch = min(2048, context)
        self.cost = PassCost()  # what a pass of one row costs here by tokens read (``--speculate auto``)
        self.draft_record: dict = {}
        self.open: list = []  # open sessions (``speculative`` reads whether a row shares the passes)
        self.passes = 0
        self.seconds = 0.0

    @classmethod
    def from_gguf(cls, path, tokenizer, name: str | None = None, context: int | None = None, seqs: int = 16,
                  threads: int | None = None, batch: int = 2048) -> "LlamaCppModel":
        """Load ``path`` (a GGUF file) for sessions of ``context`` cache cells each (default 4096, or
        the model's trained length if less), at most ``seqs`` to a llama.cpp context, on ``threads``
        CPU threads (default: the machine's physical cores). A context's cache is held from its first
        session on (Qwen2.5-Coder-1.5B: 28 KB a cell, 4096 cells 115 MB a sequence)."""
        llama = _llama()
        path = os.fspath(path)
        params = llama.llama_model_default_params()
        # read, not mapped: the CPU repacks most quantized weights into its own layout, and a mapped
        # file keeps the original pages resident beside the copy (the 1.5B: 1.75 GB mapped, 1.16 GB read)
        params.load_mode = llama.LLAMA_LOAD_MODE_NONE
        model = llama.llama_model_load_from_file(path.encode(), params)
        if not model:
            from ..errors import ModelLoadError

            raise ModelLoadError(f"llama.cpp could not load '{path}' (not a GGUF file, or an architecture this "
                                 f"llama-cpp-python does not know): check the file, or run it with --backend transformers")
        model_cells = llama.llama_model_n_ctx_train(model)
        context = context or (min(4096, model_cells) if model_cells > 0 else 4096)
        out = cls(llama, model, tokenizer, name or os.path.basename(path), context, seqs, threads or physical_cores())
        out.batch = min(batch, context)  # tokens one llama_decode reads at most (a longer tail is read in parts)
        return out

    def session(self) -> "LlamaCppSession":
        home = next((c for c in self._contexts if c.free), None) or self._new_context()
        s = LlamaCppSession(self, home, home.free.pop(0))
        self.open.append(s)
        return s

    def _new_context(self) -> "_Context":
        llama = self._llama
        seqs = min(self.seqs, max(1, sum(len(c.seq_ids) for c in self._contexts)))  # as many as the others hold
        params = llama.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = self.context_length * seqs, self.batch, min(512, self.batch)
        params.n_seq_max, params.n_threads, params.n_threads_batch = seqs, self.threads, self.threads
        params.kv_unified = False  # a cache stream per sequence: batched rows read as alone (module docstring)
        ctx = llama.llama_init_from_model(self._model, params)
        if not ctx:
            raise RuntimeError(f"llama.cpp could not make a context of {seqs} x {self.context_length} cells for "
                               f"'{self.name}' (memory?): use fewer rows at once, or a smaller --context")
        home = _Context(llama, ctx, seqs)
        self._contexts.append(home)
        return home

    def release(self, session: "LlamaCppSession") -> None:
        """Forget ``session``'s cache and free its sequence id."""
        session.home.cut(session.seq, 0)
        session.home.free.append(session.seq)
        self.open.remove(session)

    def forward_batch(self, sessions: list) -> None:
        """Every session's pending tail: one ``llama_decode`` per context (more where a batch fills)."""
        for home in {id(s.home): s.home for s in sessions}.values():
            group, tokens = [], 0
            for s in (s for s in sessions if s.home is home):
                self._read_ahead(s)
                n = len(s.pending()[1])
                if group and tokens + n > home.batch_size:
                    self._pass(home, group)
                    group, tokens = [], 0
                group.append(s)
                tokens += n
            if group:
                self._pass(home, group)

    def _read_ahead(self, session) -> None:
        """A tail longer than a batch (a long prompt): all but its last batch read first, in batches
        that ask for no logits; the session then has one batch left to read as usual."""
        start, tail = session.pending()
        home, size = session.home, session.home.batch_size
        while len(tail) - max(size, session.wanted()) > 0:
            chunk = tail[:size]
            home.decode([(t, start + i, session.seq, False) for i, t in enumerate(chunk)])
            session.adopt(start + len(chunk))
            start, tail = session.pending()

    def _pass(self, home: "_Context", sessions: list) -> None:
        """One ``llama_decode`` over ``sessions``' tails; each session stores its wanted positions'
        log-probabilities ([V] or [wanted, V])."""
        entries, rows = [], []  # (token, position, seq, wants logits); per session its logits' batch indices
        for s in sessions:
            start, tail = s.pending()
            if start + len(tail) > self.context_length:
                raise ValueError(f"the context of {start + len(tail)} tokens is longer than the {self.context_length} "
                                 f"cells llama.cpp holds per row for '{self.name}': pass a larger --context")
            want = s.wanted()
            rows.append(range(len(entries) + len(tail) - want, len(entries) + len(tail)))
            entries += [(t, start + i, s.seq, i >= len(tail) - want) for i, t in enumerate(tail)]
        elapsed = home.decode(entries)
        for s, indices in zip(sessions, rows):
            logits = torch.from_numpy(np.stack([home.logits(i, self.vocab_size) for i in indices]))
            logprobs = torch.log_softmax(logits, dim=-1)
            s.store(logprobs[0] if len(indices) == 1 else logprobs)
        self.passes += 1
        self.seconds += elapsed
        if len(sessions) == 1:
            self.cost.add(len(entries), elapsed)

    def end_ids(self) -> list[int]:
        """The tokens llama.cpp says end a generation (end of text, end of turn)."""
        vocab = self._llama.llama_model_get_vocab(self._model)
        return [i for i in (self._llama.llama_vocab_eos(vocab), self._llama.llama_vocab_eot(vocab)) if i >= 0]

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """``text``'s ids by llama.cpp's own tokenizer (the GGUF's), no BOS added; ``special``: control
        tokens written as text ('<|im_start|>') are read as those tokens."""
        llama, data = self._llama, text.encode("utf-8")
        buffer = (llama.llama_token * (len(data) + 8))()
        n = llama.llama_tokenize(llama.llama_model_get_vocab(self._model), data, len(data), buffer, len(buffer), False, special)
        return list(buffer[:n])

    def close(self) -> None:
        """Free the contexts and the weights (once); sessions still open then hold nothing."""
        for home in self._contexts:
            home.close()
        self._contexts = []
        if self._model is not None:
            self._llama.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        if not sys.is_finalizing():  # at exit llama.cpp may be gone first: the process frees it all
            self.close()


def physical_cores() -> int:
    """The physical cores this process may run on (a core's second hardware thread only contends for
    its arithmetic units, so llama.cpp is no faster on it); the logical count where Linux does not say."""
    try:
        allowed = os.sched_getaffinity(0)
        cores = set()
        for cpu in allowed:
            topology = f"/sys/devices/system/cpu/cpu{cpu}/topology"
            with open(f"{topology}/core_id") as a, open(f"{topology}/physical_package_id") as b:
                cores.add((a.read().strip(), b.read().strip()))
        return max(1, len(cores))
    except (OSError, AttributeError):
        return os.cpu_count() or 1


class _Context:
    """One llama.cpp context: its sequences' caches, which of them are free, and its passes."""

    def __init__(self, llama, ctx, seqs: int):
        self._llama, self.ctx = llama, ctx
        self.memory = llama.llama_get_memory(ctx)
        self.seq_ids = range(seqs)
        self.free = list(self.seq_ids)
        self.batch_size = llama.llama_n_batch(ctx)

    def cut(self, seq: int, keep: int) -> None:
        """Drop sequence ``seq``'s cache from position ``keep`` on (nothing once the context is freed)."""
        if self.ctx is not None:
            self._llama.llama_memory_seq_rm(self.memory, seq, keep, -1)

    def close(self) -> None:
        if self.ctx is not None:
            self._llama.llama_free(self.ctx)
            self.ctx = self.memory = None

    def decode(self, entries: list[tuple]) -> float:
        """One ``llama_decode`` of (token, position, sequence, wants logits) entries; its seconds."""
        llama = self._llama
        if self.ctx is None:
            raise RuntimeError("the llama.cpp model was closed: load it again")
        batch = llama.llama_batch_init(len(entries), 0, 1)
        try:
            batch.n_tokens = len(entries)
            for i, (token, pos, seq, logits) in enumerate(entries):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
                batch.seq_id[i][0] = seq
            started = time.perf_counter()
            code = llama.llama_decode(self.ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode failed ({code})")
            return time.perf_counter() - started
        finally:
            llama.llama_batch_free(batch)

    def logits(self, index: int, vocab_size: int) -> np.ndarray:
        pointer = self._llama.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(vocab_size,)).astype(np.float32, copy=True)


class LlamaCppSession(PrefixSession):
    """One llama.cpp sequence of its model's context; close it to free the sequence."""

    def __init__(self, model: LlamaCppModel, home: _Context, seq: int):
        super().__init__()
        self.model, self.home, self.seq = model, home, seq
        self.runner = model

    def _run(self) -> None:
        self.model.forward_batch([self])

    def adopt(self, cached: int) -> None:
        """The cache now holds the first ``cached`` tokens of the context (read ahead in batches)."""
        self._cached = cached

    def _truncate(self, keep: int) -> None:
        self.home.cut(self.seq, keep)

    def close(self) -> None:
        if self.seq is not None:
            self.model.release(self)
            self.seq = None

    def __del__(self):
        if not sys.is_finalizing():
            self.close()
