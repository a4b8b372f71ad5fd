"""GGUF models run in-process by llama.cpp (llama-cpp-python's low-level API): full next-token
distributions, a KV cache sequence per session, many sessions in one ``llama_decode`` call.

    model = LlamaCppModel.from_gguf("model.gguf", tokenizer, name="smollm2", seqs=16)
    s = model.session(); s.sync(model.tokenizer.encode_prompt("Question: 2+3?\\nAnswer:"))
    s.logprobs().shape  # torch.Size([49152]): the GGUF's own vocabulary

One llama.cpp context per model holds every session's cache, a stream of ``context`` cells per
sequence (not ``kv_unified``: measured on the embedded SmolLM2, a unified cache made a batched row's
probabilities differ from the same row alone by up to 0.03, and greedy answers part; a stream per
sequence gives the same numbers to the last bit). A session owns one sequence id while it is open; its cache is kept for the longest common prefix and cut back with ``llama_memory_seq_rm``
(rewind, a draft that missed). A batched pass puts every session's pending tail in one
``llama_batch`` (a sequence id per row, the logits asked only where a row needs them: its last
token, or each drafted token's), so rows of different lengths run together without padding.

The token ids are the GGUF's own, which the tokenizer given must share (an ``HFTokenizer`` converted
from the same file does: ``tests/test_llama_cpp_backend.py`` checks prompts and special tokens).
This module is the backend alone; ``--backend llama.cpp`` (issue 34) is not wired to it yet.
"""

from __future__ import annotations

import ctypes
import os
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

        raise ConfigError("the llama.cpp backend needs llama-cpp-python: pip install llama-cpp-python "
                          "(in a blendin checkout: make test builds it once)") from None
    if _QUIET is None:
        _QUIET = llama_cpp.llama_log_callback(lambda level, text, data: None)
        llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
    return llama_cpp


class LlamaCppModel:
    """A GGUF model in a llama.cpp context for up to ``seqs`` sessions of ``context`` cells each.

    Capabilities: ``full_distribution``, ``batched``, ``drafts``; ``context_length``: a session's cells."""

    full_distribution = True
    batched = True
    drafts = True
    device = "cpu"
    dtype = torch.float32  # the logits' dtype (the weights stay as quantized in the file)

    def __init__(self, llama, model, ctx, tokenizer, name: str, seqs: int):
        self._llama, self._model, self._ctx = llama, model, ctx
        self.tokenizer, self.name = tokenizer, name
        self.vocab_size = llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(model))
        self.context_length = llama.llama_n_ctx_seq(ctx)
        self._memory = llama.llama_get_memory(ctx)
        self._free = list(range(seqs))  # sequence ids not held by a session
        self._batch_size = llama.llama_n_batch(ctx)
        self.cost = PassCost()  # what a pass of one row costs here by tokens read (``--speculate auto``)
        self.draft_record: dict = {}
        self.open: list = []  # open sessions (``speculative`` reads whether a row shares the passes)
        self.runner = self  # where ``speculative`` looks for the pass cost and the draft record
        self.passes = 0
        self.seconds = 0.0

    @classmethod
    def from_gguf(cls, path, tokenizer, name: str | None = None, context: int = 4096, seqs: int = 16,
                  threads: int | None = None) -> "LlamaCppModel":
        """Load ``path`` (a GGUF file) for up to ``seqs`` sessions of ``context`` cache cells each, on
        ``threads`` CPU threads (default: the machine's cores)."""
        llama = _llama()
        path = os.fspath(path)
        model = llama.llama_model_load_from_file(path.encode(), llama.llama_model_default_params())
        if not model:
            from ..errors import ModelLoadError

            raise ModelLoadError(f"llama.cpp could not load '{path}' (not a GGUF file, or an architecture this "
                                 f"llama-cpp-python does not know): check the file, or run it with the transformers backend")
        params = llama.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = context * seqs, min(context, 2048), 512, seqs
        params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
        params.kv_unified = False  # a cache stream per sequence: batched rows read as alone (module docstring)
        ctx = llama.llama_init_from_model(model, params)
        return cls(llama, model, ctx, tokenizer, name or os.path.basename(path), seqs)

    def session(self) -> "LlamaCppSession":
        if not self._free:
            raise RuntimeError(f"all {len(self.open)} llama.cpp sequences of '{self.name}' are open: "
                               "close a session, or load the model with more seqs")
        s = LlamaCppSession(self, self._free.pop(0))
        self.open.append(s)
        return s

    def release(self, session: "LlamaCppSession") -> None:
        """Forget ``session``'s cache and free its sequence id."""
        self._llama.llama_memory_seq_rm(self._memory, session.seq, -1, -1)
        self.open.remove(session)
        self._free.append(session.seq)

    def cut(self, seq: int, keep: int) -> None:
        """Drop sequence ``seq``'s cache from position ``keep`` on."""
        self._llama.llama_memory_seq_rm(self._memory, seq, keep, -1)

    def forward_batch(self, sessions: list) -> None:
        """Every session's pending tail in as few ``llama_decode`` calls as the batch size allows."""
        group, tokens = [], 0
        for s in sessions:
            n = len(s.pending()[1])
            if group and tokens + n > self._batch_size:
                self._pass(group)
                group, tokens = [], 0
            group.append(s)
            tokens += n
        if group:
            self._pass(group)

    def _pass(self, sessions: list) -> None:
        """One ``llama_decode`` over ``sessions``' tails; each session stores its wanted positions'
        log-probabilities ([V] or [wanted, V])."""
        llama = self._llama
        entries, rows = [], []  # (token, position, seq, wants logits); per session its logits' batch indices
        for s in sessions:
            start, tail = s.pending()
            if len(tail) > self._batch_size:
                raise ValueError(f"a tail of {len(tail)} tokens is longer than the llama.cpp batch ({self._batch_size})")
            want = s.wanted()
            rows.append(range(len(entries) + len(tail) - want, len(entries) + len(tail)))
            entries += [(t, start + i, s.seq, i >= len(tail) - want) for i, t in enumerate(tail)]
        batch = llama.llama_batch_init(len(entries), 0, 1)
        try:
            batch.n_tokens = len(entries)
            for i, (token, pos, seq, logits) in enumerate(entries):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
                batch.seq_id[i][0] = seq
            started = time.perf_counter()
            code = llama.llama_decode(self._ctx, batch)
            if code != 0:
                raise RuntimeError(f"llama_decode failed ({code}): the context ({self.context_length} cells) may be full; "
                                   "load the model with a larger context or fewer sessions")
            elapsed = time.perf_counter() - started
            for s, indices in zip(sessions, rows):
                logits = torch.from_numpy(np.stack([self._logits(i) for i in indices]))
                logprobs = torch.log_softmax(logits, dim=-1)
                s.store(logprobs[0] if len(indices) == 1 else logprobs)
        finally:
            llama.llama_batch_free(batch)
        self.passes += 1
        self.seconds += elapsed
        if len(sessions) == 1:
            self.cost.add(len(entries), elapsed)

    def _logits(self, index: int) -> np.ndarray:
        pointer = self._llama.llama_get_logits_ith(self._ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.vocab_size,)).astype(np.float32, copy=True)

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """``text``'s ids by llama.cpp's own tokenizer (the GGUF's), no BOS added; ``special``: control
        tokens written as text ('<|im_start|>') are read as those tokens."""
        llama, data = self._llama, text.encode("utf-8")
        buffer = (llama.llama_token * (len(data) + 8))()
        n = llama.llama_tokenize(llama.llama_model_get_vocab(self._model), data, len(data), buffer, len(buffer), False, special)
        return list(buffer[:n])

    def __del__(self):
        try:
            self._llama.llama_free(self._ctx)
            self._llama.llama_model_free(self._model)
        except Exception:
            pass


class LlamaCppSession(PrefixSession):
    """One llama.cpp sequence of its model's context; close it to free the sequence."""

    def __init__(self, model: LlamaCppModel, seq: int):
        super().__init__()
        self.model, self.seq = model, seq
        self.runner = model

    def _run(self) -> None:
        self.model.forward_batch([self])

    def _truncate(self, keep: int) -> None:
        self.model.cut(self.seq, keep)

    def close(self) -> None:
        if self.seq is not None:
            self.model.release(self)
            self.seq = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
