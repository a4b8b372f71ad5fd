"""Models behind an OpenAI-compatible ``/v1/completions`` server (vLLM, SGLang, llama.cpp), with top-k logprobs.

    model = RemoteModel("http://127.0.0.1:8000", "meta-llama/Llama-3.1-8B", tokenizer, top_k=20, chunk=8)

The tokenizer is local (loaded from the same Hugging Face id, folder or GGUF file), so blendin works
in token ids as with local models: a server's top-k answer becomes a distribution over the
tokenizer's vocabulary that is zero outside the top k. It is not renormalised: the base's top-1
probability stays exact, and ``covered`` (the top-k's mass) is reported.

Chunked speculation: a session asks for a chunk of greedy tokens with the top-k at every position.
While the decoding loop keeps choosing those same tokens (the base is confident), the next
distributions come from that answer without another request; where the loop chooses otherwise (an
intervention), the next request starts from the new context. The chunk length adapts between 2 and
``chunk`` (doubled after a chunk is read to its end, halved after one is cut short in its first
quarter), so a server does not compute long chunks that interventions throw away. ``chunk=1`` is the
token-by-token protocol.

Prompts go as token ids where the server accepts them (vLLM, SGLang), so chunked and token-by-token
greedy decoding give the same text. A server that only takes text (llama-cpp-python's) re-tokenises
the prompt on every request, which can change tokens at chunk boundaries; ``prompt_protocol`` says
which one was used.

End tokens: llama-cpp-python (0.3.x) leaves the end token out of an answer, logprobs included, and
says ``finish_reason: "stop"`` (an end right after the prompt is an answer with empty ``tokens``). The
end token is then taken as the greedy choice with all the mass (the server sends nothing else about
that position), under the tokenizer's ``eos_id``. Its logprobs are keyed by text, where every control
token is ''; that key is read as the end token's probability.
"""

from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import torch

from ..errors import BlendinError, ModelUnavailable
from ..httpclient import JSONClient, Unreachable
from .base import PrefixSession


class RemoteError(ModelUnavailable):
    """A server could not be reached or answered in a way blendin cannot use."""


class RemoteModel:
    """A completions endpoint plus a local tokenizer. Capabilities: not ``full_distribution``;
    ``batched``: the sessions of a batch that wait on it are sent as up to ``concurrency`` requests
    at once, each thread with its own kept-alive connection."""

    full_distribution = False
    batched = True

    def __init__(self, url: str, model: str, tokenizer, name: str | None = None, api_key: str | None = None,
                 top_k: int = 20, chunk: int = 8, timeout: float = 60.0, retries: int = 3, concurrency: int = 8):
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RemoteError(f"bad server URL '{url}': give it as http://HOST:PORT (with /v1 or without)")
        self.url, self.model_name = url, model
        path = parsed.path.rstrip("/")
        prefix = path if path.endswith("/v1") else path + "/v1"
        self.tokenizer = tokenizer
        self.name = name or model
        self.vocab_size = len(tokenizer.pieces())
        self.context_length = None  # the server knows it; a too-long request is answered with a 400
        self.api_key = api_key if api_key is not None else os.environ.get("BLENDIN_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self.top_k, self.chunk, self.timeout, self.retries = top_k, chunk, timeout, retries
        self.accepts_token_ids: bool | None = None  # found out on the first request
        self.requests = 0
        self.concurrency = concurrency
        self._client = JSONClient(f"{parsed.scheme}://{parsed.netloc}{prefix}", self.api_key, timeout, retries,
                                  connections=concurrency)  # shared by the pool's threads, connections kept alive
        self._count = threading.Lock()
        self._pool = None
        self._by_text: dict[str, int] | None = None  # built on first need: only text-keyed servers use it

    @property
    def prompt_protocol(self) -> str:
        return "text" if self.accepts_token_ids is False else "token_ids"

    def describe(self) -> dict:
        return {"url": self.url, "model": self.model_name, "prompt_protocol": self.prompt_protocol,
                "top_k": self.top_k, "chunk": self.chunk}

    def session(self) -> "RemoteSession":
        return RemoteSession(self)

    def reachable(self) -> bool:
        """Whether its server answers now (GET /models, 2 s, no retry): a server's /health asks it of a model down."""
        return self._client.reachable()

    def forward_batch(self, sessions: list) -> None:
        """Bring many sessions up to date with concurrent requests."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="blendin-remote")
        for future in [self._pool.submit(s.logprobs) for s in sessions]:
            future.result()

    # -- one completion request -----------------------------------------------------------------
    def complete(self, ids: list[int], n: int) -> tuple[list[tuple[int, torch.Tensor, float]], int]:
        """Up to ``n`` greedy tokens after ``ids``: (token id, logprobs [V] (-inf outside the top k),
        covered mass) per position; and the number of HTTP requests it took."""
        sent = 0
        while True:
            payload = {"model": self.model_name, "max_tokens": n, "temperature": 0.0, "logprobs": self.top_k,
                       "echo": False, "return_tokens_as_token_ids": True}
            payload["prompt"] = ids if self.accepts_token_ids is not False else self._as_text(ids)
            status, body, tries = self._post(payload)
            sent += tries
            if status == 200:
                if self.accepts_token_ids is None:
                    self.accepts_token_ids = True
                return self._parse(body), sent
            message = _error_text(body)
            refused = status in (400, 422)
            if refused and "logprob" in message.lower() and self.top_k > 1:
                # vLLM's --max-logprobs (default 20): "... greater than max allowed: 20"; the prompt
                # protocol is not at fault, so token-id prompts are kept
                cap = _stated_cap(message)
                self.top_k = cap if cap is not None and 1 <= cap < self.top_k else max(1, self.top_k // 2)
                continue
            if refused and _is_context_error(message):
                if n > 1:  # the chunk's tokens may be what does not fit: ask for one
                    n = 1
                    continue
                raise RemoteError(
                    f"the context is too long for '{self.model_name}' at {self.url}: {len(ids)} prompt tokens and "
                    f"1 new token do not fit (the server says: {message}); shorten the prompt or lower max_new_tokens"
                )
            if self.accepts_token_ids is None and isinstance(payload["prompt"], list) and (refused or "prompt" in message.lower()):
                # a text-only server (llama-cpp-python answers 500 with a validation error): send text
                self.accepts_token_ids = False
                continue
            raise RemoteError(f"{self.url} answered {status}: {message}")

    def _as_text(self, ids: list[int]) -> str:
        tok = getattr(self.tokenizer, "tok", None)
        if tok is None:
            return self.tokenizer.decode(ids)
        text = tok.decode(ids, skip_special_tokens=False)
        bos = tok.bos_token
        return text[len(bos):] if bos and text.startswith(bos) else text  # the server adds its own BOS

    def _parse(self, body: bytes) -> list[tuple[int, torch.Tensor, float]]:
        data = json.loads(body)
        choice = (data.get("choices") or [{}])[0]
        lp = choice.get("logprobs")
        tokens, tops = (lp.get("tokens") or [], lp.get("top_logprobs") or []) if isinstance(lp, dict) else ([], [])
        stopped = choice.get("finish_reason") == "stop"  # blendin sends no stop strings: an end token
        # an answer that is only an end token: logprobs sent, and empty, with no text
        ended = stopped and isinstance(lp, dict) and not tokens and not choice.get("text")
        if not tops and not ended:
            raise RemoteError(
                f"{self.url} returned no logprobs. vLLM/SGLang return them on request; a llama.cpp "
                "(llama-cpp-python) server must be started with logits_all=True (--logits_all true)."
            )
        out = []
        for token, top in zip(tokens, tops):
            chosen = self._token_id(token)
            if chosen is None:
                break  # a token we cannot place: stop using this answer here
            logprobs = torch.full((self.vocab_size,), float("-inf"))
            for key, value in (top or {}).items():
                # subtle: llama-cpp-python keys logprobs by text, and a control token's text is '': read
                # as the end token's probability (the chosen token is never an end token; where it is ''
                # itself, the key holds its own). Where several control tokens are in the top k, the
                # key keeps the least likely one's (the server writes them in order), an understatement.
                tid = self._end_id() if key == "" and token != "" else self._token_id(key)
                if tid is not None and value is not None and value > logprobs[tid]:
                    logprobs[tid] = float(value)
            out.append((chosen, logprobs, float(torch.exp(logprobs).sum())))
        if stopped and len(out) == len(tokens) and not (out and out[-1][0] in self.tokenizer.eos_ids):
            # The server stopped at an end token it does not list (llama-cpp-python sends neither an end
            # token nor its logprobs; at an end right after the prompt, tokens and top_logprobs are empty).
            # Greedy decoding stopped there, so the end token was the top token; its probability is not
            # sent. It gets all the mass (covered 1.0), so greedy decoding stops where the server did.
            end = torch.full((self.vocab_size,), float("-inf"))
            end[self._end_id()] = 0.0
            out.append((self._end_id(), end, 1.0))
        if not out:
            raise RemoteError(f"{self.url} returned tokens blendin cannot map to the tokenizer of '{self.name}'")
        return out

    def _end_id(self) -> int:
        """The id an end token is given where the server does not say which one it was."""
        tok = self.tokenizer
        eos = getattr(tok, "eos_id", None)
        return eos if eos is not None else min(tok.eos_ids)

    def _token_id(self, key: str) -> int | None:
        if key.startswith("token_id:"):
            return int(key.split(":", 1)[1])
        if self._by_text is None:
            self._by_text = _surface_index(self.tokenizer)
        return self._by_text.get(key)

    def _post(self, payload: dict) -> tuple[int, bytes, int]:
        """(status, body, HTTP requests made), retrying 429/5xx and broken connections with backoff
        (``httpclient.JSONClient``)."""
        # subtle: llama-cpp-python answers a token-id prompt with a 500 validation error; that is an
        # answer (switch to text), not a fault to retry
        def validation(status: int, data: bytes) -> bool:
            return status == 500 and b"prompt" in data and isinstance(payload.get("prompt"), list)

        try:
            status, data, tries = self._client.post("/completions", payload, final=validation)
        except Unreachable as exc:
            raise RemoteError(f"cannot reach {self.url} ({exc}) after {exc.tries} tries; is the server running, and is the URL right?") from None
        with self._count:
            self.requests += tries
        return status, data, tries


class RemoteSession(PrefixSession):
    """A context on a remote model. The server keeps its own prefix cache; blendin keeps the last
    chunk of greedy tokens so that a context following them needs no new request."""

    def __init__(self, model: RemoteModel):
        super().__init__()
        self.model = model
        self.requests = 0
        self.covered: list[float] = []  # top-k mass of each distribution handed out
        self._chunk_at: list[int] = []  # the context the last chunk was asked for
        self._chunk: list[tuple[int, torch.Tensor, float]] = []
        self._used = 0  # how many positions of the last chunk were read
        self._size = min(4, model.chunk)  # the next chunk's length, adapted as in speculative decoding

    def _forward(self, new_ids: list[int]) -> torch.Tensor:
        hit = self._from_chunk(self.ids)
        if hit is None:
            self._adapt()
            # subtle: set the chunk and its context together, after the answer: a failed request must
            # not leave the old chunk looking like an answer for the new context
            self._chunk_at, self._chunk = [], []
            chunk, sent = self.model.complete(list(self.ids), self._size)
            self._chunk_at, self._chunk = list(self.ids), chunk
            self.requests += sent
            self._used = 1
            hit = self._chunk[0]
        self.covered.append(hit[2])
        return hit[1]

    def _adapt(self) -> None:
        """Double the chunk after one was read to its end; halve it after one was cut short early."""
        if not self._chunk:
            return
        if self._used >= len(self._chunk):
            self._size = min(2 * self._size, self.model.chunk)
        elif self._used <= len(self._chunk) // 4:
            self._size = max(2, self._size // 2) if self.model.chunk > 1 else 1

    def _from_chunk(self, ids: list[int]):
        n = len(self._chunk_at)
        if not self._chunk or ids[:n] != self._chunk_at:
            return None
        extra = ids[n:]
        if len(extra) < len(self._chunk) and extra == [t for t, _, _ in self._chunk[: len(extra)]]:
            self._used = max(self._used, len(extra) + 1)
            return self._chunk[len(extra)]
        return None

    def _truncate(self, keep: int) -> None:
        pass  # nothing cached here but the chunk, which checks its own context


def _surface_index(tokenizer) -> dict[str, int]:
    """Token text (as servers print it) -> id, for servers that key logprobs by text."""
    index: dict[str, int] = {}
    for tid in range(len(tokenizer.pieces())):
        if tid in tokenizer.special_ids:
            continue
        index.setdefault(tokenizer.decode([tid]), tid)
    for tid in sorted(tokenizer.special_ids):
        piece = tokenizer.pieces()[tid]
        if piece:
            index.setdefault(piece, tid)
    return index


_CONTEXT_WORDS = ("maximum context length", "context length", "context window", "context_length_exceeded", "too many tokens")


def _is_context_error(message: str) -> bool:
    """vLLM: "This model's maximum context length is 2048 tokens. However, you requested 2100 tokens
    ..."; llama.cpp: "Requested tokens (2100) exceed context window of 2048"; OpenAI: code
    context_length_exceeded."""
    low = message.lower()
    return any(w in low for w in _CONTEXT_WORDS)


def _stated_cap(message: str) -> int | None:
    """The logprobs cap a server names ("... max allowed: 5"), or None.

    >>> _stated_cap("Requested sample logprobs of 20, which is greater than max allowed: 5")
    5
    """
    m = re.search(r"max(?:imum)?(?: allowed)?(?: logprobs)?\s*(?:is|of|:|=)?\s*(\d+)", message, re.IGNORECASE)
    return int(m.group(1)) if m else None


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
        err = data.get("error", data)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except (ValueError, AttributeError):
        return body[:300].decode("utf-8", "replace")
