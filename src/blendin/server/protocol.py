"""The OpenAI-compatible wire format: request models (validated with pydantic) and error bodies.

    req = CompletionRequest.model_validate({"model": "blendin", "prompt": "2+3=", "max_tokens": 8})
    req.blendin.method   # the extension object: {"method", "gamma", "alpha"}, each optional

Fields the OpenAI API has and blendin does not use (``user``, ``logit_bias``...) are accepted and
ignored, as vLLM does, so that existing clients work unchanged; values are checked where they matter.
"""

from __future__ import annotations

import logging
import uuid
from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..config import METHODS, did_you_mean

log = logging.getLogger("blendin.server")

SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes at most 64 bits


class BlendinOptions(BaseModel):
    """The ``blendin`` extension object; anything left out takes the server's setting."""

    model_config = ConfigDict(extra="forbid")
    method: str | None = None
    gamma: float | None = Field(None, ge=0, le=1)
    alpha: Union[float, Literal["auto"], None] = None
    repeat_stop: bool | None = None  # stop an answer that repeats itself (the page sets it; default: the server's --repeat-stop)
    steps: bool = False  # a stream's chunks carry each token's record (who chose it, alpha, the models' top tokens): the page at /

    @field_validator("method")
    @classmethod
    def _known(cls, v):
        if v is not None and v not in METHODS:
            raise ValueError(f"unknown method '{v}'{did_you_mean(v, METHODS)}; choose one of: {', '.join(METHODS)}")
        return v

    @field_validator("alpha")
    @classmethod
    def _unit(cls, v):
        if isinstance(v, float) and not 0 <= v <= 1:
            raise ValueError("alpha must be 'auto' or a number in [0, 1]")
        return v


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    max_tokens: int | None = Field(None, ge=0)  # 0: only a completion with echo (the prompt scored, nothing written)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, le=SEED_MAX)
    stop: Union[str, list[str], None] = None
    n: int = Field(1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    blendin: BlendinOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v):
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > 16 or any(s == "" for s in stops):
            raise ValueError("stop takes up to 16 non-empty strings")
        return stops

    def stops(self) -> tuple[str, ...]:
        return tuple(self.stop or ())


class CompletionRequest(_Sampling):
    """``prompt``: text, base-model token ids (as vLLM takes them), or a list of either (one choice
    per prompt and n)."""

    prompt: Union[str, list[int], list[str], list[list[int]]]
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    prompt_logprobs: int | None = Field(None, ge=0, le=20)  # vLLM's: each prompt token's logprob and the top k, by token id

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, v):
        if v == "" or v == [] or (isinstance(v, list) and any(p == "" or p == [] for p in v if not isinstance(p, int))):
            raise ValueError("the prompt is empty")
        return v

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str) or (p and isinstance(p[0], int)):
            return [p]
        return list(p)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[TextPart]]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


def as_dicts(messages: list[ChatMessage]) -> list[dict]:
    """Messages for the prompt renderers; 'developer' (the newer name) counts as 'system'."""
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in messages]


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)

    @field_validator("max_tokens")
    @classmethod
    def _writes(cls, v):
        if v == 0:
            raise ValueError("max_tokens must be at least 1 (a chat reply has no echo)")
        return v

    @field_validator("messages")
    @classmethod
    def _has_user(cls, v):
        if not any(m.role == "user" for m in v):
            raise ValueError("messages need at least one message with role 'user'")
        return v

    def as_dicts(self) -> list[dict]:
        return as_dicts(self.messages)


class TokenizeRequest(BaseModel):
    """vLLM's ``POST /tokenize``: ``prompt`` (text, read as a completion's prompt is) or ``messages``
    (rendered as a chat request is), in the base's vocabulary (the one ``usage`` counts)."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool = True  # with the tokenizer's own BOS etc., as a prompt is read

    @model_validator(mode="after")
    def _one_input(self):
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give either prompt (text) or messages (a chat), not both or neither")
        return self

    def as_dicts(self) -> list[dict]:
        return as_dicts(self.messages or [])


class DetokenizeRequest(BaseModel):
    """vLLM's ``POST /detokenize``: base-vocabulary token ids back to text."""

    model: str | None = None
    tokens: list[int]


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> dict:
    """The OpenAI error shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def validation_error_body(exc: ValidationError) -> dict:
    """The first problem pydantic found, with the field named (``param``) and said in the message."""
    err = exc.errors()[0]
    param = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith(("function-", "list[", "str", "int"))) or None
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    return error_body(f"{param}: {msg}" if param else msg, param=param)


def internal_error(exc: BaseException, what: str) -> str:
    """A fault of the server: logged here with its traceback under a fresh id; the client is told only
    the id (an exception's text can hold paths, other requests' text or the models' internals)."""
    ref = f"err-{uuid.uuid4().hex[:12]}"
    log.error("%s [%s]", what, ref, exc_info=(type(exc), exc, exc.__traceback__))
    return f"internal error [{ref}]; the server's log has the details"
