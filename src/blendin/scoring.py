"""Scoring a text under a method: the probability the decoding loop gives each of its tokens.

    from blendin.scoring import score_texts
    [s] = score_texts(pair, [("Question: Is ice cold?\\nAnswer:", " Yes")], BlendConfig(method="blendin"))
    s.logprob, s.greedy, s.tokens[0].source       # log P(continuation | context), all argmax?, who decided

A text is scored by decoding it with its own tokens forced (teacher forcing) through the very loop
that generates (``ScoredRow``, a ``decoding.Generation``): at each position the base's distribution
p_b, the gate (m_b < gamma), the guides where it opens (each reading the text so far in its own
tokens, carried into the base's vocabulary by the bridge), the weights, the mitigations and a
profile, the mixture. Where generation would draw, ``ForcedSampler`` takes the text's next token
instead and records its probability in the distribution generation draws from, that
distribution's top tokens, and whether the token is its argmax. So a score is what generation sees:
a greedy generation's tokens score greedy everywhere, and a text's log-probability under the base
method is the base model's own.

Positions are always the base's tokens. Methods: ``base``; ``guide`` (the guide alone, carried into
the base's vocabulary: every position consulted, weight 1, no gate); ``switch``; ``blendin``.
Nudging's guide writes whole words, which do not score token by token: refused. Temperature and
top_p do not apply: a score is of the method's own distribution. An end token inside the text is
scored as any token (generation would stop there; a score goes on).

Cost: the base reads the text in passes of up to ``CHUNK`` tokens (its tokens drafted, as
speculative decoding drafts them: ``ForcedDraft``), batched with the other texts' passes; a guide
runs where it is consulted, and each pass it runs reads the rest of the text ahead in its own
tokens, so that it runs again only where a base position falls inside one of its tokens (never,
for a guide of the base's tokenizer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch

from .config import BlendConfig
from .decoding import Generation, run_rows
from .errors import ConfigError, message_line
from .pair import Pair
from .policies import TokenSwitch
from .prompts import Rendered
from .types import GenerationResult, Step

METHODS = ("base", "guide", "switch", "blendin")
CHUNK = 128  # tokens the base reads per pass (its [CHUNK, V] distributions are kept until used)


@dataclass(frozen=True)
class TokenScore:
    """One token of the text: its id and text (base vocabulary), its log-probability under the
    method, whether it was the argmax there (``greedy``), the distribution's ``top`` (id, logprob)
    pairs, highest first, and who decided the position ("base", "blend", "guide")."""

    token_id: int
    text: str
    logprob: float
    greedy: bool
    top: tuple[tuple[int, float], ...]
    source: str
    rank: int = 1  # 1 + the tokens more likely than it (vLLM's rank)


@dataclass(frozen=True)
class Scored:
    """A text's score: one ``TokenScore`` per scored token (the continuation's, or every token after
    the first), and the positions where a guide was consulted and counted (``interventions``).
    ``error``: why this text alone could not be scored (its tokens are then empty)."""

    tokens: tuple[TokenScore, ...]
    interventions: int = 0
    error: str | None = None
    base_passes: int = 0  # the base's forward passes (a text of up to CHUNK + 1 tokens: one)
    guide_passes: int = 0  # the guides' (one per pass that must run; drafted positions need none)

    @property
    def logprob(self) -> float:
        return math.fsum(t.logprob for t in self.tokens)

    @property
    def greedy(self) -> bool:
        return all(t.greedy for t in self.tokens)


@dataclass(frozen=True)
class ScoredResult(GenerationResult):
    """What a server's engine reports for a scored row: the generation's fields, and ``scored``."""

    scored: Scored | None = None


class ForcedSampler:
    """Instead of drawing, take the text's next token; record its probability in ``probs`` (the
    distribution generation would draw from: p_b or the mixture), the top ``k``, and the argmax."""

    greedy = True

    def __init__(self, tokens: list[int], k: int):
        self.tokens, self.k = tokens, k
        self.seen: list[tuple] = []  # (token, logprob, greedy, top, rank) per position

    def choose(self, probs: torch.Tensor) -> int:
        """``probs``: [V_base] (never changed). The forced token at this position."""
        token = self.tokens[len(self.seen)]
        p = float(probs[token])
        values, ids = torch.topk(probs, min(max(self.k, 1), probs.shape[0]))
        top = tuple((int(i), _log(float(v))) for v, i in zip(values, ids))[: self.k]
        self.seen.append((token, _log(p), p >= float(values[0]), top, int((probs > p).sum()) + 1))
        return token


class ForcedDraft:
    """Drafts the text's next tokens on the base's session before its pass, so one pass reads up to
    ``CHUNK`` of them and keeps the distribution after each: the loop then moves along the text
    without a pass until they are used up. (A ``speculative`` drafter whose drafts are always taken.)"""

    name = "forced"

    def __init__(self, session, tokens: list[int]):
        self.session, self.tokens, self.drafted = session, tokens, 0

    @property
    def accepted(self) -> int:
        return self.session.advanced

    def prepare(self, row):
        n = len(row.steps)
        rest = self.tokens[n: min(n + CHUNK, len(self.tokens) - 1)]  # the last token's next distribution is not needed
        if rest and getattr(row.base.model, "drafts", False):
            self.session.draft(rest)
            self.drafted += len(rest)
        return
        yield  # a coroutine, as the loop's drafters are

    def finish(self) -> None:
        pass


@dataclass(frozen=True)
class EveryPosition(TokenSwitch):
    """The guide method, scored in the base's vocabulary: the guide decides every position alone."""

    gamma: float = 1.0

    def consult_guide(self, base_top_prob: float) -> bool:
        return True


class ScoredRow(Generation):
    """``ids[start:]`` decoded with its tokens forced after ``ids[:start]`` (base vocabulary), under
    ``config``'s method; ``scored()`` then gives each token's ``TokenScore``."""

    def __init__(self, pair: Pair, ids: list[int], start: int, config: BlendConfig, top: int = 0):
        check_method(config)
        if not 1 <= start < len(ids):
            raise ConfigError(f"a scored text needs at least one token before and one after its start ({start} of {len(ids)} tokens)")
        self.forced = [int(t) for t in ids[start:]]
        row_config = _row_config(config, len(self.forced), top)
        super().__init__(pair, render_context(pair, row_config, ids[:start]), row_config)
        if config.method == "guide":
            self.policy = EveryPosition()
        self.sampler = ForcedSampler(self.forced, top)
        self.drafter = ForcedDraft(self.base.session, self.forced)
        self._guide_texts: dict[int, list[int]] = {}  # guide k's prompt + the whole text in its tokens

    def _consult(self, k: int, base_probs, m_b: float):
        """As generation consults guide ``k``, but a pass it must run also reads ahead the rest of
        the text in the guide's tokens (up to ``CHUNK``): the later positions where the guide's
        tokens of the text so far are a prefix of those need no pass of their own."""
        track = self.guides[k].follow(self.transcript.text)
        session = track.session
        if session.stale and not session.drafted and getattr(track.model, "drafts", False):
            if k not in self._guide_texts:
                self._guide_texts[k] = track.prompt + track.tok.encode(self.pair.base.tokenizer.decode(self.forced))
            whole, ids = self._guide_texts[k], session.ids
            if whole[: len(ids)] == ids:
                session.draft(whole[len(ids): len(ids) + CHUNK])
        return (yield from super()._consult(k, base_probs, m_b))

    def _emit(self, track, token: int, step: Step, drafted: bool = False) -> Step:
        """As generation records a token, but an end token is text like any other, no stop string
        ends it, and the row ends after the text's last token."""
        delta = self.transcript.push(track.tok, token)
        track.push(token)
        track.text = self.transcript.text
        step = replace(step, token=delta)
        self.steps.append(step)
        self.interventions += step.intervened
        if len(self.steps) >= len(self.forced):
            self.stop_reason = "length"
        return step

    def result(self) -> "ScoredResult":
        """The loop's ``GenerationResult`` of the row, with its ``Scored`` (exact values) beside it."""
        plain = super().result()
        return ScoredResult(**{f.name: getattr(plain, f.name) for f in fields(plain)}, scored=self.scored())

    def scored(self) -> Scored:
        if self.error is not None:
            return Scored((), error=message_line(self.error))
        self.transcript.flush()
        tokens = tuple(TokenScore(token, step.token, logprob, greedy, top, step.source, rank)
                       for (token, logprob, greedy, top, rank), step in zip(self.sampler.seen, self.steps))
        return Scored(tokens, self.interventions, base_passes=self.base.session.forward_calls,
                      guide_passes=sum(g.session.forward_calls for g in self.guides))


def check_method(config: BlendConfig) -> None:
    if config.method not in METHODS:
        raise ConfigError(f"method '{config.method}' cannot score a text token by token (its guide writes whole words); "
                          f"use one of {', '.join(METHODS)}")


def _row_config(config: BlendConfig, n: int, top: int) -> BlendConfig:
    """The loop's config for a scored row: the method's rule, no stop strings, no sampling, no other
    drafter; each step's ``top`` tokens kept in its ``alternatives`` (a server's logprobs read them).
    The guide method runs as switch with the gate always open (``EveryPosition``): the base's tokens, the guide's weights."""
    changes = dict(max_new_tokens=n, stop=(), turn_stop=False, temperature=0.0, speculate="off", trace_top=top)
    if config.method == "guide":
        changes.update(method="switch", more_guides=(), profile=None, max_intervention_rate=None, agreement_top_k=None,
                       reliability=False, retire_below=None, capability_gap=None)
    return config.with_(**changes)


def render_context(pair: Pair, config: BlendConfig, base_ids) -> Rendered:
    """The context as each model reads a raw completion prompt: the base its ids, each guide their
    text in its own tokens; a guide to which the text is empty (a lone start token) reads its end token,
    as a language model scores a text's first token after one."""
    base_ids = tuple(int(t) for t in base_ids)
    text = pair.base.tokenizer.decode(list(base_ids))
    guides = []
    for model in pair.guides[: len(config.guides)] if config.uses_guide else ():
        ids = tuple(model.tokenizer.encode_prompt(text)) or (_end_id(model.tokenizer),)
        guides.append(ids)
    return Rendered(base_ids, guides[0] if guides else None, tuple(guides[1:]))


def _end_id(tok) -> int:
    return tok.eos_id if tok.eos_id is not None else min(tok.eos_ids)


def split_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], int]:
    """(ids, start) of a context/continuation pair as lm-evaluation-harness splits one: the whole
    text encoded once (the tokenizer's start token included), the continuation the tokens past the
    context's own encoding; a space ending the context moves to the continuation."""
    if not continuation:
        raise ConfigError("a continuation needs text: it is what is scored")
    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation
    whole = tokenizer.encode_prompt(context + continuation)
    start = len(tokenizer.encode_prompt(context)) if context else 0
    if start == 0:  # nothing before the continuation: it is scored after the end token (lm-eval's rule)
        whole, start = [_end_id(tokenizer), *whole], 1
    if start >= len(whole):
        raise ConfigError("the continuation adds no token to the context; give it text that encodes to a token at least")
    return whole, start


def score_ids(pair: Pair, texts: list[tuple[list[int], int]], config: BlendConfig, top: int = 0,
              batch_size: int = 16) -> list[Scored]:
    """Score each (ids, start): ``ids[start:]`` after ``ids[:start]`` (base vocabulary), in one batch
    of up to ``batch_size`` rows. A text that cannot be scored (too long for a model's context, say)
    gets its ``error``; the others are scored."""
    check_method(config)
    results: list[Scored | None] = [None] * len(texts)
    index = {}

    def rows():
        for i, (ids, start) in enumerate(texts):
            try:
                row = ScoredRow(pair, ids, start, config, top)
            except ConfigError as exc:
                results[i] = Scored((), error=str(exc))
                continue
            index[row] = i
            yield row

    for row, step in run_rows(rows(), width=batch_size):
        if step is None:
            results[index.pop(row)] = row.scored()
    return results


def score_texts(pair: Pair, pairs: list[tuple[str, str]], config: BlendConfig, top: int = 0, batch_size: int = 16) -> list[Scored]:
    """Score each (context, continuation) of text: the continuation's tokens (``split_pair``)."""
    return score_ids(pair, [split_pair(pair.base.tokenizer, c, x) for c, x in pairs], config, top, batch_size)


def _log(p: float) -> float:
    return math.log(p) if p > 0 else float("-inf")
