"""From a validated request to rows for the engine, and from the rows' events to OpenAI responses.

    service = Service(pair, BlendConfig(), ServeSettings())
    jobs = service.completion_jobs(req)             # [(Rendered, BlendConfig)]; RequestError if bad
    body = service.completion_body(req, results)    # the JSON a non-streamed request gets

The server's ``BlendConfig`` gives every default; a request changes only what it names (the
OpenAI fields, and ``blendin``: method, gamma, alpha). Chat is rendered for the guide with its chat
template and for the base as plain text (``prompts.render_chat``); completions are continued as
they stand by both models (``prompts.render_raw``), and token-id prompts are in the base's vocabulary.

Where an answer ends: a chat reply stops at the base's next turn ('\\nQuestion:', the server's
``turn_stop``, off with ``blendin serve --no-turn-stop``), since the server wrote that format itself;
a raw completion continues the client's own text, whose format the server does not know, and stops
only where the request's ``stop`` (or the server's ``--stop``) says, as vLLM does.
"""

from __future__ import annotations

import math
import time
import uuid
from typing import Callable

from ..config import BlendConfig
from ..errors import BlendinError
from ..prompts import Rendered, render_chat, render_raw
from ..types import GenerationResult, Step
from .protocol import SEED_MAX, ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest
from .echo import ScoreJob, echo_choice, echo_problem, prompt_logprobs, score_jobs, scored_by_prompt
from .settings import ServeSettings

STEP_TOP = 5  # the top tokens of each distribution a step record carries (the page's hover card)


class RequestError(BlendinError):
    """A request the server cannot serve as asked: answered with ``status`` and the field named."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


class Service:
    def __init__(self, pair, config: BlendConfig, settings: ServeSettings):
        from ..profile import Ledger

        self.pair, self.config, self.settings = pair, config, settings
        self.ledger = Ledger()  # each guide's record across the answers served (GET /v1/profile)
        self.base_tok = pair.base.tokenizer if pair.base is not None else None
        self.guide_tok = pair.guide.tokenizer if pair.guide is not None else None
        self.more_guide_toks = [g.tokenizer for g in getattr(pair, "more_guides", ())]  # further guides render their own prompts
        self.start_id = start_token(self.base_tok) if self.base_tok is not None else None

    def with_start(self, ids: list[int]) -> list[int]:
        """A token-id prompt as the base reads it: after its start token, where its tokenizer puts one
        before every text (Gemma's <bos>) and the prompt does not begin with it (a client that
        tokenized without special tokens: lm-evaluation-harness through /tokenize)."""
        return [self.start_id, *ids] if self.start_id is not None and ids and ids[0] != self.start_id else ids

    # -- requests -> rows -------------------------------------------------------------------
    def check_model(self, name: str) -> None:
        if name != self.settings.model_name:
            raise RequestError(f"model '{name}' is not served here; this server serves '{self.settings.model_name}' (GET /v1/models)",
                               param="model", status=404, code="model_not_found")

    def request_config(self, req, max_tokens: int | None, top_logprobs: int, turn_stop: bool) -> BlendConfig:
        """The server's config with what the request names; ``turn_stop``: whether this route's
        prompts are in the base's question/answer format, so that its next turn ends the answer."""
        c, s, ext = self.config, self.settings, req.blendin
        max_tokens = max_tokens if max_tokens is not None else min(c.max_new_tokens, s.max_tokens_cap)
        if max_tokens > s.max_tokens_cap:
            raise RequestError(f"max_tokens is {max_tokens}, above this server's cap of {s.max_tokens_cap} (blendin serve --max-tokens-cap)", param="max_tokens")
        changes = dict(max_new_tokens=max_tokens, stop=c.stop + req.stops(), trace_top=top_logprobs, turn_stop=turn_stop and c.turn_stop)
        for field in ("temperature", "top_p", "seed"):
            if getattr(req, field) is not None:
                changes[field] = getattr(req, field)
        if ext is not None:
            for field in ("method", "gamma"):
                if getattr(ext, field) is not None:
                    changes[field] = getattr(ext, field)
            if ext.alpha is not None:
                changes["alpha"] = None if ext.alpha == "auto" else ext.alpha
            if ext.repeat_stop is not None:
                changes["repeat_stop"] = ext.repeat_stop
            if ext.steps:
                changes["trace_top"] = max(top_logprobs, STEP_TOP)
            if changes.get("method") in ("guide", "nudging") and c.more_guides:
                changes["more_guides"] = ()  # one guide writes under these: the first, as the server's own guide
        try:
            return c.with_(**changes)
        except BlendinError as exc:
            raise RequestError(str(exc), param="blendin") from None

    def _rows(self, config: BlendConfig, prompts: list[Rendered], n: int, max_tokens_given: bool) -> list[tuple[Rendered, BlendConfig]]:
        for rendered in prompts:
            for length, name in ((len(rendered.base_ids or ()), "base"), (len(rendered.guide_ids or ()), "guide")):
                if length > self.settings.max_prompt_tokens:
                    raise RequestError(f"the prompt is {length} tokens for the {name} model, above this server's limit of "
                                       f"{self.settings.max_prompt_tokens} (blendin serve --max-prompt-tokens)", param="prompt")
        config = self.fit_context(config, prompts, max_tokens_given)
        jobs = []
        for rendered in prompts:
            for j in range(n):
                seed = None if config.seed is None else (config.seed + j) % (SEED_MAX + 1)  # n rows, n seeds, all in range
                jobs.append((rendered, config if seed == config.seed else config.with_(seed=seed)))
        if len(jobs) > self.settings.max_queue:
            raise RequestError(f"this request asks for {len(jobs)} completions (prompts x n); the server queues at most {self.settings.max_queue}", param="n")
        return jobs

    def fit_context(self, config: BlendConfig, prompts: list[Rendered], max_tokens_given: bool) -> BlendConfig:
        """Prompt + max_tokens must fit the context of each model the method uses (``context_length``;
        None: unknown, not checked). A max_tokens the request gave that does not fit is a 400 with the
        numbers; the server's default is lowered to what fits instead."""
        max_tokens = config.max_new_tokens
        used = (("base", self.pair.base, config.uses_base), ("guide", self.pair.guide, config.uses_guide))
        for rendered in prompts:
            for (name, model, uses), ids in zip(used, (rendered.base_ids, rendered.guide_ids)):
                context = getattr(model, "context_length", None) if uses and ids is not None else None
                if not isinstance(context, int):
                    continue
                length = len(ids)
                if length >= context:
                    raise RequestError(f"the prompt is {length} tokens, which leaves no room for a completion in the {name} model's "
                                       f"context of {context} tokens; shorten the prompt", param="prompt")
                if length + max_tokens > context:
                    if max_tokens_given:
                        raise RequestError(f"the prompt is {length} tokens and max_tokens is {max_tokens}, {length + max_tokens} in all, "
                                           f"above the {name} model's context of {context} tokens; lower max_tokens to at most "
                                           f"{context - length}", param="max_tokens")
                    max_tokens = context - length
        return config if max_tokens == config.max_new_tokens else config.with_(max_new_tokens=max_tokens)

    def _more_toks(self, config: BlendConfig) -> list:
        """The further guides' tokenizers, for the ones ``config`` consults (a request for the guide
        method or nudging consults one)."""
        return self.more_guide_toks[:len(config.more_guides)] if config.uses_guide else []

    def completion_jobs(self, req: CompletionRequest) -> list[tuple[Rendered, BlendConfig]]:
        """A row per prompt and n; with ``echo``, a scoring row per prompt after them (``echo``)."""
        self.check_model(req.model)
        scores = req.echo or req.prompt_logprobs is not None  # the prompt scored too (``echo``)
        if req.max_tokens == 0 and not req.echo:
            raise RequestError("max_tokens must be at least 1 (0 only with echo, which scores the prompt alone)", param="max_tokens")
        prompt_only = req.echo and req.max_tokens == 0
        config = self.request_config(req, None if prompt_only else req.max_tokens, req.logprobs or 0, turn_stop=False)  # raw text: no turn format
        if scores:
            if req.stream:
                raise RequestError("a scored prompt (echo, prompt_logprobs) is answered whole, not streamed: send it without stream", param="stream")
            problem = echo_problem(config, self.base_tok is not None)
            if problem is not None:
                raise RequestError(problem, param="echo" if req.echo else "prompt_logprobs")
        jobs = [] if prompt_only else self._completion_rows(req, config)
        if scores:
            top = max(req.logprobs or 0, req.prompt_logprobs or 0)
            jobs += score_jobs(self.echo_ids(req), config, top, self.start_id)
        if not jobs:
            raise RequestError("max_tokens 0 with a one-token prompt leaves nothing to score or write", param="max_tokens")
        return jobs

    def echo_ids(self, req: CompletionRequest) -> list[list[int]]:
        """Each prompt in the base's tokens, as echo scores it (``/tokenize`` gives the same ids)."""
        ids = [self._known_ids(p) if isinstance(p, list) else self.base_tok.encode_prompt(p) for p in req.prompts()]
        for p in ids:
            if len(p) > self.settings.max_prompt_tokens:
                raise RequestError(f"the prompt is {len(p)} tokens, above this server's limit of {self.settings.max_prompt_tokens} "
                                   "(blendin serve --max-prompt-tokens)", param="prompt")
        return ids

    def _known_ids(self, ids: list[int]) -> list[int]:
        """A token-id prompt, checked against the base's vocabulary."""
        if self.base_tok is None:
            raise RequestError("token-id prompts are in the base model's vocabulary, and this server has no base model", param="prompt")
        vocab = self.pair.base.vocab_size
        bad = [t for t in ids if not 0 <= t < vocab]
        if bad:
            raise RequestError(f"token id {bad[0]} is outside the base model's vocabulary (0..{vocab - 1})", param="prompt")
        return ids

    def _completion_rows(self, req: CompletionRequest, config: BlendConfig) -> list[tuple[Rendered, BlendConfig]]:
        prompts = []
        for p in req.prompts():
            if isinstance(p, list):
                prompts.append(render_raw(self.base_tok, self.guide_tok if config.uses_guide else None, base_ids=self.with_start(self._known_ids(p)),
                                          more_guide_toks=self._more_toks(config)))
            else:
                prompts.append(render_raw(self.base_tok if config.uses_base else None, self.guide_tok if config.uses_guide else None, text=p,
                                          more_guide_toks=self._more_toks(config)))
        return self._rows(config, prompts, req.n, max_tokens_given=req.max_tokens is not None)

    def chat_jobs(self, req: ChatCompletionRequest) -> list[tuple[Rendered, BlendConfig]]:
        self.check_model(req.model)
        top = (req.top_logprobs or 1) if req.logprobs else 0
        max_tokens = req.max_completion_tokens or req.max_tokens
        config = self.request_config(req, max_tokens, top, turn_stop=True)
        rendered = render_chat(self.base_tok if config.uses_base else None, self.guide_tok if config.uses_guide else None,
                               config.prompt, req.as_dicts(), more_guide_toks=self._more_toks(config))
        return self._rows(config, [rendered], req.n, max_tokens_given=max_tokens is not None)

    # -- counting tokens (vLLM's /tokenize and /detokenize) ----------------------------------
    def _counted(self):
        """The model whose vocabulary prompts are counted in: the base, or the guide of a guide-only server."""
        return self.pair.base if self.pair.base is not None else self.pair.guide

    def tokenize(self, req: TokenizeRequest) -> dict:
        """{"count", "max_model_len", "tokens"}: the ids the base reads for this prompt or chat."""
        if req.model is not None:
            self.check_model(req.model)
        model = self._counted()
        if req.messages is not None:
            base = model is self.pair.base
            rendered = render_chat(model.tokenizer if base else None, None if base else model.tokenizer, self.config.prompt, req.as_dicts())
            ids = list(rendered.base_ids if base else rendered.guide_ids)
        else:
            ids = model.tokenizer.encode_prompt(req.prompt) if req.add_special_tokens else model.tokenizer.encode(req.prompt)
        return {"count": len(ids), "max_model_len": getattr(model, "context_length", None), "tokens": ids}

    def tokenizer_info(self) -> dict:
        """vLLM's ``GET /tokenizer_info`` for the vocabulary ``/tokenize`` counts in: its special tokens'
        text (each maps back to its id through ``/tokenize``) and chat template; lm-evaluation-harness
        asks it first and then tokenizes through the server."""
        model = self._counted()
        tok = model.tokenizer
        hf = getattr(tok, "tok", None)  # a transformers tokenizer, where the backend has one

        def text(name: str, token_id: int | None) -> str | None:
            value = getattr(hf, name, None) if hf is not None else None
            if value is None and token_id is not None:
                value = tok.pieces()[token_id]
            return value

        return {"tokenizer_class": type(hf).__name__ if hf is not None else type(tok).__name__, "model": model.name,
                "eos_token": text("eos_token", tok.eos_id), "bos_token": text("bos_token", self.start_id if model is self.pair.base else None),
                "pad_token": getattr(hf, "pad_token", None), "chat_template": getattr(hf, "chat_template", None),
                "model_max_length": getattr(model, "context_length", None)}

    def detokenize(self, req: DetokenizeRequest) -> dict:
        """{"prompt"}: the text of base-vocabulary ids (control tokens dropped, as in answers)."""
        if req.model is not None:
            self.check_model(req.model)
        model = self._counted()
        size = getattr(model, "vocab_size", None)
        bad = next((t for t in req.tokens if t < 0 or (size is not None and t >= size)), None)
        if bad is not None:
            raise RequestError(f"token id {bad} is outside the vocabulary of '{model.name}' (ids 0 to {size - 1})", param="tokens")
        return {"prompt": model.tokenizer.decode(req.tokens)}

    # -- results -> responses ---------------------------------------------------------------
    @staticmethod
    def new_id(kind: str) -> str:
        return f"{kind}-{uuid.uuid4().hex[:24]}"

    @staticmethod
    def prompt_tokens(jobs, n: int) -> int:
        """Prompt tokens of a request (one rendered prompt per ``n`` rows), in the base's vocabulary."""
        return sum(len(rendered.base_ids or rendered.guide_ids) for rendered, _ in jobs[::n])

    @staticmethod
    def usage(prompt_tokens: int, results: list[GenerationResult]) -> dict:
        completion = sum(r.tokens for r in results)
        return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}

    @staticmethod
    def blendin_summary(results: list[GenerationResult]) -> dict:
        """The response's ``blendin`` object: the method and its intervention count and rate, and for
        one answer why it ended (``stop_reason``: finish_reason "stop" covers "stop", "eos" and "repeat")."""
        first = results[0]
        tokens = sum(r.tokens for r in results)
        interventions = sum(r.interventions for r in results)
        alphas = [a for r in results for a in [r.mean_alpha] if a is not None]
        out = {"method": first.method, "gamma": first.gamma, "alpha": first.alpha, "tokens": tokens,
               "interventions": interventions, "intervention_rate": interventions / tokens if tokens else 0.0,
               "mean_alpha": sum(alphas) / len(alphas) if alphas else None, "stop_reason": first.stop_reason if len(results) == 1 else None}
        down = [{"guide": g["guide"], "failed_at": g["failed_at"], "error": g["error"]}
                for r in results for g in (r.guides or ()) if g.get("failed_at") is not None]
        if down:  # a guide stopped answering: from failed_at on, the base decided alone where it would have guided
            out["guides_down"] = down
        return out

    def spell(self, step: Step) -> str:
        """The chosen token as the step's top lists spell tokens (``Generation._alternatives``), in the
        vocabulary it was decoded in, so that it can be found among them."""
        tok = self.guide_tok if _vocabulary(step) == "guide" else self.base_tok
        if tok is None or step.token_id is None:
            return step.token
        return "<eos>" if step.token_id in tok.eos_ids else tok.decode([step.token_id])

    @staticmethod
    def step_record(step: Step) -> dict:
        """One token's record for a stream that asked for ``blendin.steps`` (the page at /): who chose
        it (``source``: base, blend or guide), alpha, both models' top-1 and the top tokens of each
        distribution (``alternatives``)."""
        return {"token": step.token, "source": step.source, "alpha": step.alpha, "base_top_prob": step.base_top_prob,
                "guide_top_prob": step.guide_top_prob, "agreement": step.agreement, "alternatives": step.alternatives}

    def completion_body(self, req: CompletionRequest, jobs, results: list[GenerationResult]) -> dict:
        if req.echo or req.prompt_logprobs is not None:
            return self.scored_body(req, jobs, results)
        choices = [{"index": i, "text": r.text, "finish_reason": finish_reason(r), "logprobs": completion_logprobs(r.steps, req.logprobs, self.spell),
                    "blendin": self.blendin_summary([r])} for i, r in enumerate(results)]
        prompt_tokens = self.prompt_tokens(jobs, req.n)
        return {"id": self.new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": req.model,
                "choices": choices, "usage": self.usage(prompt_tokens, results), "blendin": self.blendin_summary(results)}

    def scored_body(self, req: CompletionRequest, jobs, results: list[GenerationResult]) -> dict:
        """Completions with the prompt scored: with ``echo``, each choice is the prompt (its first
        token null) then what was generated; with ``prompt_logprobs``, each choice has them by id."""
        scored = scored_by_prompt(jobs, results)
        generated = [r for (job, _), r in zip(jobs, results) if not isinstance(job, ScoreJob)]
        prompts, choices = self.echo_ids(req), []
        for p, ids in enumerate(prompts):
            for j in range(req.n):
                gen = generated[p * req.n + j] if generated else None
                if req.echo:
                    text, logprobs = echo_choice(ids, self.base_tok, scored.get(p), gen, req.logprobs, completion_logprobs, self.spell)
                else:
                    text, logprobs = gen.text, completion_logprobs(gen.steps, req.logprobs, self.spell)
                answered = [r for r in (gen or scored.get(p),) if r is not None]
                choice = {"index": len(choices), "text": text, "finish_reason": finish_reason(gen) if gen else "length",
                          "logprobs": logprobs, "blendin": self.blendin_summary(answered) if answered else None}
                if req.prompt_logprobs is not None:
                    choice["prompt_logprobs"] = prompt_logprobs(ids, self.base_tok, scored.get(p), req.prompt_logprobs)
                choices.append(choice)
        usage = self.usage(sum(len(ids) for ids in prompts), generated)
        return {"id": self.new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": req.model,
                "choices": choices, "usage": usage, "blendin": self.blendin_summary(generated or list(scored.values()))}

    def chat_body(self, req: ChatCompletionRequest, jobs, results: list[GenerationResult]) -> dict:
        top = (req.top_logprobs or 0) if req.logprobs else None
        choices = [{"index": i, "message": {"role": "assistant", "content": r.text}, "finish_reason": finish_reason(r),
                    "logprobs": chat_logprobs(r.steps, top, self.spell), "blendin": self.blendin_summary([r])} for i, r in enumerate(results)]
        prompt_tokens = self.prompt_tokens(jobs, req.n)
        return {"id": self.new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": req.model,
                "choices": choices, "usage": self.usage(prompt_tokens, results), "blendin": self.blendin_summary(results)}


def start_token(tok) -> int | None:
    """The token a tokenizer puts before every text (``encode_prompt`` against ``encode``), or None."""
    plain, prompt = tok.encode("x"), tok.encode_prompt("x")
    return prompt[0] if len(prompt) == len(plain) + 1 and prompt[1:] == plain else None


def finish_reason(result: GenerationResult) -> str:
    return "length" if result.stop_reason == "length" else "stop"


def _logprob(p: float) -> float:
    return math.log(p) if p > 0 else -9999.0


def _vocabulary(step: Step) -> str:
    """Which of the step's top lists its token was decoded from: "blend" wherever there was a mixture
    (BlendIn, and switch, whose source says "guide" though its token is the base's, decoded from the
    guide carried into the base vocabulary), else the step's source."""
    return "blend" if "blend" in (step.alternatives or {}) else step.source


def _top(step: Step, k: int, spell: Callable[[Step], str]) -> list[tuple[str, float]]:
    """The k most likely tokens of the distribution this step was decoded from, as (text, logprob),
    always with the chosen token (spelled as ``tokens`` has it), added after the k where it is not
    among them (as vLLM does); a step with no top list (a word Nudging's guide wrote) gets the chosen
    token alone."""
    if not k:
        return []
    alts = (step.alternatives or {}).get(_vocabulary(step), [])[:k]
    top = [(t, _logprob(p)) for t, p in alts]
    chosen, mine = spell(step), (step.token, _logprob(step.chosen_prob))
    at = next((j for j, (t, _) in enumerate(alts) if t == chosen), None)
    if at is None:
        top.append(mine)
    else:
        top[at] = mine
    return top


def completion_logprobs(steps, k: int | None, spell: Callable[[Step], str]) -> dict | None:
    """The legacy completions format: tokens, token_logprobs, top_logprobs, text_offset
    (``spell``: ``Service.spell``, to find each chosen token in its top list)."""
    if k is None:
        return None
    offsets, pos = [], 0
    for s in steps:
        offsets.append(pos)
        pos += len(s.token)
    return {"tokens": [s.token for s in steps], "token_logprobs": [_logprob(s.chosen_prob) for s in steps],
            "top_logprobs": [{**dict(_top(s, k, spell)), s.token: _logprob(s.chosen_prob)} if k else None for s in steps],
            "text_offset": offsets}  # (the chosen token's logprob wins where another token is spelled the same)


def chat_logprobs(steps, k: int | None, spell: Callable[[Step], str]) -> dict | None:
    if k is None:
        return None
    entry = lambda t, lp: {"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}  # noqa: E731
    return {"content": [{**entry(s.token, _logprob(s.chosen_prob)), "top_logprobs": [entry(t, lp) for t, lp in _top(s, k, spell)]}
                        for s in steps]}


def chunk_logprobs(kind: str, step: Step | None, k: int | None, spell: Callable[[Step], str]) -> dict | None:
    """Logprobs for one streamed step, in the request kind's format."""
    if step is None or k is None:
        return None
    return completion_logprobs([step], k, spell) if kind == "completion" else chat_logprobs([step], k, spell)
