"""The one decoding loop: base, guide, switch, nudging and BlendIn.

    result = generate(pair, "What is 2+3?", BlendConfig(method="blendin"))
    for step in stream(pair, prompt, config): print(step.token, end="")

Each step, the base gives its next-token distribution p_b (top-1 m_b). The policy decides:
    the base is sure (m_b >= gamma)  -> the token comes from p_b
    else blendin/switch              -> the guide catches up with the text, p_g is carried into the base
                                        vocabulary, and the token comes from alpha*p_g + (1-alpha)*p_b
    else nudging                     -> the guide writes whole words until the base is confident again
    guide method                     -> the guide writes every token in its own vocabulary
With several guides, every guide still consulted runs and the token comes from
sum_k w_k * p_k + (1 - sum_k w_k) * p_b (``blend.guide_weights``). The row's mitigations
(``mitigations.Oversight``) are told each event of an uncertain step and answer: may it be guided at
all, is each guide still consulted, does each one's distribution count, with what weight multiplier;
the loop knows none of them by name, so a new one needs no edit here.
Both models see exactly the text generated so far: the model that wrote a token keeps its own token
ids; the other re-encodes the text when it is next consulted, keeping its cache for the common prefix.

A row's decoding is a coroutine: where it needs a distribution it yields ``Need(track)`` and is sent
the probabilities back. ``run_rows`` drives many rows at once (``driver.Rows``), so each model runs
once per round for all the rows that need it (``generate_many``); one prompt is the same loop with a
single row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

import torch

from .blend import mix_many, top1
from .config import BlendConfig
from .driver import Rows
from .errors import ConfigError, ModelUnavailable, first_line
from .mitigations import Oversight, mitigations_for
from .nudging import WordDraft
from .pair import Pair, guide_role
from .policies import policy_for
from .prompts import Rendered, prompt_ids
from .repetition import loop_period
from .sampling import Sampler
from .speculative import drafter_for
from .transcript import Transcript
from .types import GenerationResult, Need, Step


class Track:
    """One model's view of the generation: a session, the prompt ids, and ids for the generated text."""

    def __init__(self, model, prompt: list[int]):
        self.model = model
        self.tok = model.tokenizer
        self.session = model.session()
        self.prompt = prompt
        self.gen_ids: list[int] = []  # the generated text, in this model's vocabulary
        self.text = ""  # the text gen_ids stand for
        self.passes = 0  # distributions read (forward passes run for this row)
        self.session.sync(prompt)

    def follow(self, text: str) -> "Track":
        """Catch up with ``text`` (written by the other model) by re-encoding it; cheap if unchanged."""
        if text != self.text:
            self.gen_ids = self.tok.encode(text)
            self.text = text
            self.session.sync(self.prompt + self.gen_ids)
        return self

    def probs(self, ahead: bool = False) -> torch.Tensor:
        """Next-token probabilities [V_model] after prompt + generated text (runs the model if needed);
        ``ahead``: after the tokens drafted past it too (``speculative``)."""
        self.passes += 1
        return torch.exp(self.session.ahead_logprobs() if ahead else self.session.logprobs())

    def push(self, token_id: int) -> None:
        self.gen_ids.append(token_id)
        self.session.append(token_id)

    def rewind(self, n: int, text: str) -> None:
        """Keep the first ``n`` generated ids (they stand for ``text``); drop drafted ones after them."""
        self.gen_ids = self.gen_ids[:n]
        self.text = text
        self.session.sync(self.prompt + self.gen_ids)


class ContextError(ConfigError):
    """A prompt with its ``max_new_tokens`` does not fit a model's context: the row is refused whole."""


class Refused:
    """A row refused before it opened a session (``ContextError``): it ends at once with its error, and
    the rows beside it go on (``generate_many``)."""

    cancelled = False

    def __init__(self, config: BlendConfig, error: Exception):
        self.config, self.error = config, error

    def decode(self):
        return  # ends before its first step: the driver reads ``error`` and drops it
        yield

    def close(self) -> None:
        pass

    def result(self) -> GenerationResult:
        c = self.config
        return GenerationResult(text="", method=c.method, gamma=c.gamma, alpha=c.alpha_label, base=c.base, guide=c.guide_label,
                                tokens=0, interventions=0, intervention_rate=0.0, mean_alpha=None, stop_reason="error",
                                seconds=0.0, tokens_per_second=0.0, vocab_coverage=None, steps=(), error=first_line(self.error))


def _check_fits(role: str, model, ids, max_new_tokens: int) -> None:
    """The prompt plus ``max_new_tokens`` must fit ``model``'s context (``context_length``; None:
    unknown, a server's, not checked here): ConfigError naming the fix, before any session opens."""
    context = getattr(model, "context_length", None) if ids is not None else None
    if isinstance(context, int) and len(ids) + max_new_tokens > context:
        flag = getattr(model, "context_flag", None)
        more = f", or pass {flag} {len(ids) + max_new_tokens} or more" if flag else ""
        room = f"lower --max-new-tokens to {context - len(ids)}" if len(ids) < context else "shorten the prompt"
        raise ContextError(f"the prompt is {len(ids)} tokens and --max-new-tokens {max_new_tokens}, {len(ids) + max_new_tokens} "
                          f"in all, past the {role} model's context of {context} tokens: {room}{more}")


class Generation:
    """One prompt's decoding. Iterate it for ``Step``s; then ``result()``."""

    def __init__(self, pair: Pair, prompt: str | Rendered, config: BlendConfig):
        """``prompt``: the user's question (formatted by ``config.prompt`` for each model), or a
        ``Rendered`` prompt of token ids per model (chat and raw completions, see ``prompts``)."""
        if not isinstance(prompt, Rendered) and (not prompt or not prompt.strip()):
            raise ConfigError("the prompt is empty: pass the question as text (or '-' to read it from stdin)")
        self.config, self.pair = config, pair
        self.policy = policy_for(config)
        if config.uses_base and pair.base is None:
            raise ConfigError(f"method '{config.method}' needs a base model; load the pair with it")
        if config.uses_guide and pair.guide is None:
            raise ConfigError(f"method '{config.method}' needs a guide model; load the pair with it")
        n_guides = len(config.guides) if config.uses_guide else 0
        if len(pair.guides) < n_guides:
            raise ConfigError(f"the configuration names {n_guides} guides and the pair has {len(pair.guides)}; load them all (load_pair(config))")
        guide_models = pair.guides[:n_guides]
        if isinstance(prompt, Rendered):
            base_ids, guides_ids = prompt.base_ids, [prompt.guide_ids, *prompt.more_guide_ids][:n_guides]
            if len(guides_ids) < n_guides:
                raise ConfigError(f"the rendered prompt has ids for {len(guides_ids)} of the {n_guides} guides; render it for each")
        else:
            fmt = config.prompt
            base_ids = prompt_ids(pair.base.tokenizer, fmt, prompt, chat=fmt.base_prompt == "chat") if config.uses_base else None
            guides_ids = [prompt_ids(g.tokenizer, fmt, prompt, chat=True) for g in guide_models]
        for role, model, ids in (("base", pair.base, base_ids), *(("guide", g, i) for g, i in zip(guide_models, guides_ids))):
            _check_fits(role, model, ids, config.max_new_tokens)
        self.base = Track(pair.base, list(base_ids)) if config.uses_base else None
        self.guides = [Track(model, list(ids)) for model, ids in zip(guide_models, guides_ids)]
        self.guide = self.guides[0] if self.guides else None  # the first guide: the one that writes under guide/nudging
        # the mitigations, with each guide's history (``records``) and what they held back (``held``)
        self.oversight = Oversight(mitigations_for(config), [g.label for g in config.guides[:n_guides]])
        weighing = [m.name for m in self.oversight.mitigations if m.weighs]
        if self.policy.writes == "words" and weighing:  # BlendConfig refuses the known ones before models load
            raise ConfigError(f"method '{config.method}' lets the guide write whole words, with no weight for "
                              f"'{weighing[0]}' to scale; turn it off, or use blendin or switch")
        self.drafter = drafter_for(config, pair, self.base, self.guides)  # None unless config.speculate
        self.detail = n_guides > 1 or config.mitigated  # steps record each guide's part (Step.guides)
        self.interventions = 0
        self.cancelled = False  # set by another thread (a client went away): run_rows drops the row
        self.error: BaseException | None = None  # set by run_rows when this row alone failed
        self.sampler = Sampler(config.temperature, config.top_p, config.seed)
        self.transcript = Transcript()
        self.steps: list[Step] = []
        self.stop_reason: str | None = None
        self.seconds = 0.0
        self._base_turn = False  # set after a nudge: the base writes the next token whatever m_b is

    def __iter__(self) -> Iterator[Step]:
        """The steps as they are decoded; a failure is raised (alone, the row has no batch to spare)."""
        for _, step in run_rows([self]):
            if step is not None:
                yield step
        if self.error is not None:
            raise self.error

    def decode(self):
        """The row's coroutine: yields ``Step``s and ``Need``s until it stops."""
        start = time.perf_counter()
        try:
            while self.stop_reason is None:
                yield from self._next()
        finally:
            self.seconds += time.perf_counter() - start
            self.close()

    def close(self) -> None:
        """Release the models' sessions (their cache slots); the drafter counts its last draft."""
        if self.drafter is not None:
            self.drafter.finish()
        for track in (self.base, *self.guides):
            if track is not None:
                getattr(track.session, "close", lambda: None)()

    def _next(self):
        """One decision of the policy: one token, or (nudging) a few words of the guide's."""
        if self.policy.writes == "all":
            yield from self._guide_token()
            return
        base = self.base.follow(self.transcript.text)
        if self.drafter is not None and base.session.stale:  # a pass will run: let it read a draft too
            yield from self.drafter.prepare(self)
        base_probs = yield Need(base)
        m_b, _ = top1(base_probs)
        base_turn, self._base_turn = self._base_turn, False
        if base_turn or not self.policy.consult_guide(m_b) or not self.oversight.allows(len(self.steps), self.interventions):
            yield self._base_token(base_probs, m_b)
        elif self.policy.writes == "words":
            yield from self._nudge(base_probs, m_b)
        else:
            yield from self._blend_token(base_probs, m_b)

    def _base_token(self, base_probs: torch.Tensor, m_b: float, guides: tuple | None = None) -> Step:
        """The base decides alone: one token from p_b (``guides``: the guides consulted and set aside)."""
        token = self.sampler.choose(base_probs)
        step = Step("", "base", m_b, None, None, None, float(base_probs[token]), None, token, self._alternatives(base_probs), guides)
        return self._emit(self.base, token, step)

    def guide_retired(self, k: int) -> bool:
        """Whether guide ``k`` is retired in this row (a drafter then does not run it either)."""
        return self.oversight.retired(k)

    def _consult(self, k: int, base_probs: torch.Tensor, m_b: float):
        """Run guide ``k`` (its track catches up with the text) and record what it says: a ``Consulted``;
        None where it did not answer and ``on_guide_failure`` is "degrade" (it is retired: ``Oversight.fail``)."""
        try:
            guide_probs = yield Need(self.guides[k].follow(self.transcript.text))
        except ModelUnavailable as exc:
            self._guide_down(k, exc)
            return None
        m_g, guide_top = top1(guide_probs)
        base_top = self.pair.bridges[k].base_id(guide_top)
        agreement = _prob_of(base_probs, base_top)
        reliability, scale = self.oversight.records[k].reliability, self.oversight.scale(k)  # as shown before this step
        refused_by = self.oversight.judge(k, base_probs, m_b, base_top)
        return Consulted(k, guide_probs, m_g, guide_top, agreement, reliability, scale, refused_by)

    def _guide_down(self, k: int, exc: ModelUnavailable) -> None:
        """Guide ``k`` did not answer: retired for the rest of the answer under "degrade", else the row fails."""
        if self.config.on_guide_failure != "degrade":
            raise exc
        self.oversight.fail(k, exc, len(self.steps))

    def _blend_token(self, base_probs: torch.Tensor, m_b: float):
        """BlendIn and switch: decode one base-vocabulary token from sum_k w_k * p_k + (1 - sum_k w_k) * p_b,
        over the guides the mitigations keep (one guide: alpha * p_g + (1 - alpha) * p_b)."""
        consulted, retired_by = [], []
        for k in range(len(self.guides)):
            refuser = self.oversight.consults(k, len(self.steps))
            answer = (yield from self._consult(k, base_probs, m_b)) if refuser is None else None
            if answer is not None:
                consulted.append(answer)
            else:  # retired, now or before (a guide that stopped answering is retired as it fails)
                retired_by.append(refuser or self.oversight.records[k].retired_by)
        kept = [c for c in consulted if c.kept]
        if not kept:  # every guide retired or set aside: the base decides, and says which mitigation made it
            self.oversight.hold(([c.refused_by for c in consulted] or retired_by)[0])
            yield self._base_token(base_probs, m_b, self._detail(consulted, {}))
            return
        # the rule weighs every guide consulted; one set aside gives its share to the base, not to the others
        # (docs/decisions.md); x 1.0 is exact: without a weighting mitigation, the rule's own weights
        trust = [self.oversight.trust(c.k) for c in consulted]
        all_weights = self.policy.weights(m_b, [c.m_g for c in consulted], [c.agreement for c in consulted],
                                          None if all(t == 1.0 for t in trust) else trust)
        weights = [w * c.scale for w, c in zip(all_weights, consulted) if c.kept]
        bridges = self.pair.bridges
        mixed = mix_many(base_probs, [bridges[c.k].to_base(c.probs) for c in kept], weights)
        for c in kept:
            self.oversight.intervened(c.k)
        lead = kept[max(range(len(kept)), key=lambda i: weights[i])]  # the step's guide fields: the heaviest guide's
        token = self.sampler.choose(mixed)
        step = Step("", self.policy.source, m_b, lead.m_g, sum(weights), lead.agreement, float(mixed[token]),
                    bridges[lead.k].mass_exact(lead.probs), token, self._alternatives(base_probs, lead.probs, mixed, self.guides[lead.k].tok),
                    self._detail(consulted, {c.k: w for c, w in zip(kept, weights)}))
        yield self._emit(self.base, token, step)

    def _detail(self, consulted: list, weights: dict) -> tuple | None:
        """Step.guides: per guide consulted, its top token, m_g, weight, agreement, reliability, kept."""
        if not self.detail:
            return None
        return tuple({"guide": c.k, "top": _piece(self.guides[c.k].tok, c.top), "m_g": c.m_g, "weight": weights.get(c.k, 0.0),
                      "agreement": c.agreement, "reliability": c.reliability, "kept": c.kept} for c in consulted)

    def _guide_token(self):
        """The guide method: the guide writes one token in its own vocabulary."""
        guide_probs = yield Need(self.guide)
        m_g, _ = top1(guide_probs)
        token = self.sampler.choose(guide_probs)
        step = Step("", "guide", None, m_g, 1.0, None, float(guide_probs[token]), None, token, self._alternatives(None, guide_probs))
        yield self._emit(self.guide, token, step)

    def _nudge(self, base_probs: torch.Tensor, m_b: float):
        """Nudging (Fei et al. 2024): the guide writes words, accepted one by one (``nudging.WordDraft``);
        the mitigations read the first word's top token. Each token the guide writes is an intervention."""
        refuser = self.oversight.consults(0, len(self.steps))
        if refuser is None:
            draft = WordDraft(self)
            try:
                yield from draft.until(1)
            except ModelUnavailable as exc:  # before any word is written: the base decides (later ones fail the row)
                self._guide_down(0, exc)
                refuser = self.oversight.records[0].retired_by
            else:
                refuser = self.oversight.judge(0, base_probs, m_b, self.pair.bridge.base_id(draft.tokens[0].top))
                if refuser is not None:
                    draft.rewind()
        if refuser is not None:
            self.oversight.hold(refuser)
            yield self._base_token(base_probs, m_b)
            return
        checks, base_took_over = yield from draft.accept(base_probs, m_b)
        written = yield from self._write_words(draft, checks)
        self.oversight.intervened(0, written)
        draft.rewind(written)
        # The base is confident again, or its top token starts the guide's next word: either way the
        # base writes on from here (else the guide would redraft that word). If the whole draft was
        # taken, the next step asks the base afresh and the guide may go on.
        self._base_turn = base_took_over

    def _write_words(self, draft: WordDraft, checks: list):
        """Emit the accepted words' tokens (one per ``checks`` entry: the base's view at its first
        token); returns how many were written (a stop ends them early)."""
        written = 0
        for word, (m_b, base_probs) in zip(draft.words(), checks):
            for j, token in enumerate(word):
                d = draft.tokens[written]
                written += 1
                agreement = _prob_of(base_probs, self.pair.bridge.base_id(d.top)) if j == 0 else None
                step = Step("", "guide", m_b if j == 0 else None, d.m_g, 1.0, agreement, d.chosen_prob, None, token, d.alternatives)
                yield self._emit(draft.guide, token, step, drafted=True)
                if self.stop_reason is not None:
                    return written
        return written

    def _alternatives(self, base_probs=None, guide_probs=None, mixed_probs=None, guide_tok=None) -> dict | None:
        """The top ``trace_top`` tokens of each distribution given, as [text, prob], for traces and
        logprobs: "base", "guide", and "blend" (the mixture a blended token was decoded from)."""
        k = self.config.trace_top
        if not k:
            return None
        out = {}
        for role, probs in (("base", base_probs), ("guide", guide_probs), ("blend", mixed_probs)):
            if probs is not None:
                tok = (guide_tok or self.guide.tok) if role == "guide" else self.base.tok
                values, ids = torch.topk(probs, min(k, probs.shape[0]))
                out[role] = [[tok.decode([int(i)]) if int(i) not in tok.eos_ids else "<eos>", round(float(v), 6)] for v, i in zip(values, ids)]
        return out

    def _emit(self, track: Track, token: int, step: Step, drafted: bool = False) -> Step:
        """Record a chosen token: end on EOS, else add its text; then apply stop strings and the length cap."""
        if token in track.tok.eos_ids:
            self.stop_reason = "eos"
        else:
            delta = self.transcript.push(track.tok, token)
            if not drafted:
                track.push(token)
            track.text = self.transcript.text
            step = _with_token(step, delta)
            self._apply_stop_strings(len(delta))
            if self.config.repeat_stop and self.stop_reason is None and loop_period(self.transcript.text):
                self.stop_reason = "repeat"
        self.steps.append(step)
        self.interventions += step.intervened
        if self.stop_reason is None and len(self.steps) >= self.config.max_new_tokens:
            self.stop_reason = "length"
        return step

    def _apply_stop_strings(self, new_chars: int) -> None:
        """Cut the text before the first stop string (``config.stops``: the caller's, and the base's
        next turn, '\\nQuestion:') and stop; an answer that begins with the next turn ('Question: ...',
        ``config.stops_at_start``) is cut to nothing. Only the tail the new text can reach is searched."""
        text, stops = self.transcript.text, self.config.stops
        longest = max((len(s) for s in stops), default=0)
        window = max(0, len(text) - new_chars - longest)
        hits = [i for i in (text.find(s, window) for s in stops) if i >= 0]
        if text.startswith(self.config.stops_at_start):
            hits.append(0)
        if hits:
            self.transcript.cut(min(hits))
            self.stop_reason = "stop"

    def result(self) -> GenerationResult:
        self.transcript.flush()
        steps = tuple(self.steps)
        interventions = sum(s.intervened for s in steps)
        alphas = [s.alpha for s in steps if s.alpha is not None]
        masses = [s.guide_mass_exact for s in steps if s.guide_mass_exact is not None]
        coverage = None
        if self.config.uses_base and self.config.uses_guide:
            coverage = {**self.pair.bridge.describe(), "mean_guide_mass_exact": _mean(masses)}
        n = len(steps)
        requests, remote = 0, {}
        roles = [("base", self.base)] + [(guide_role(k), t) for k, t in enumerate(self.guides)]
        for role, track in roles:
            if track is not None and hasattr(track.session, "requests"):
                requests += track.session.requests
                remote[role] = {**track.model.describe(), "mean_covered": _mean(track.session.covered)}
        return GenerationResult(
            text=self.transcript.text,
            method=self.config.method,
            gamma=self.config.gamma,
            alpha=self.config.alpha_label,
            base=self.config.base,
            guide=self.config.guide_label,
            tokens=n,
            interventions=interventions,
            intervention_rate=interventions / n if n else 0.0,
            mean_alpha=_mean(alphas),
            stop_reason="error" if self.error is not None else self.stop_reason or "length",
            seconds=self.seconds,
            tokens_per_second=n / self.seconds if self.seconds > 0 else 0.0,
            vocab_coverage=coverage,
            steps=steps,
            requests=requests,
            remote=remote or None,
            error=None if self.error is None else first_line(self.error),
            unavailable=isinstance(self.error, ModelUnavailable),
            guides=tuple(r.stats(t.passes) for r, t in zip(self.oversight.records, self.guides)) or None,
            held=dict(self.oversight.held) or None,
            speculation=None if self.drafter is None else {"drafter": self.drafter.name, "drafted": self.drafter.drafted,
                                                           "accepted": self.drafter.accepted, "base_passes": self.base.session.forward_calls},
        )


def run_rows(rows: Iterable[Generation], width: int | None = None) -> Iterator[tuple[Generation, Step | None]]:
    """Drive rows together (``driver.Rows``), yielding (row, step) as steps are decoded and (row, None)
    as a row ends (``row.error`` set where it failed alone). At most ``width`` rows are open at once."""
    batch = Rows(rows, width)
    while batch.open:
        yield from batch.advance()
        if batch.waiting:
            batch.serve(batch.next_group())


def generate_many(pair: Pair, prompts: Iterable[str | dict], config: BlendConfig, batch_size: int = 8,
                  on_token=None) -> Iterator[tuple[int, GenerationResult]]:
    """Decode many prompts, up to ``batch_size`` at once; yield (index, result) as each one finishes.

    A prompt is text, or a dict with "prompt" and optionally "system" (this prompt's system line)
    and "config" (this prompt's ``BlendConfig`` instead of ``config``: rows of different methods
    share the batch, each model still running once per round for all rows that need it; the pair
    must hold the models every config uses). Greedy results are the same as ``generate`` on each
    prompt alone. Every prompt is checked before decoding starts, so a bad one fails fast instead of
    after hours of work. ``on_token(index)``, if given, is called for every token as it is decoded
    (rows still running included: what a progress line counts).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    jobs = []
    for i, item in enumerate(prompts):
        text, cfg = item, config
        if isinstance(item, dict):
            text, cfg = item.get("prompt"), item.get("config") or config
            if item.get("system") is not None:
                cfg = cfg.with_(prompt=replace(cfg.prompt, system=str(item["system"])))
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"prompt {i} is empty: every prompt needs text")
        jobs.append((text, cfg))
    index: dict[Generation, int] = {}

    def rows():
        for i, (text, cfg) in enumerate(jobs):
            try:
                row = Generation(pair, text, cfg)
            except ContextError as exc:  # this prompt alone is too long: the others decode
                row = Refused(cfg, exc)
            index[row] = i
            yield row

    for row, step in run_rows(rows(), width=batch_size):
        if step is None:
            yield index.pop(row), row.result()
        elif on_token is not None:
            on_token(index[row])


def stream(pair: Pair, prompt: str, config: BlendConfig) -> Iterator[Step]:
    """Yield each ``Step`` as it is decoded."""
    yield from Generation(pair, prompt, config)


def generate(pair: Pair, prompt: str, config: BlendConfig) -> GenerationResult:
    """Decode ``prompt`` with ``config.method``; the result carries the text and every step."""
    gen = Generation(pair, prompt, config)
    for _ in gen:
        pass
    return gen.result()


@dataclass(frozen=True)
class Consulted:
    """What one guide said at one uncertain step: its distribution [V_guide], top-1 (m_g, id), the
    base's probability of that token (agreement), its reliability before this step, the weight
    multiplier the mitigations give it, and the mitigation that set its distribution aside (None:
    it counts, ``kept``)."""

    k: int
    probs: torch.Tensor
    m_g: float
    top: int
    agreement: float
    reliability: float
    scale: float
    refused_by: object = None

    @property
    def kept(self) -> bool:
        return self.refused_by is None


def _piece(tok, token: int) -> str:
    return "<eos>" if token in tok.eos_ids else tok.decode([token])


def _with_token(step: Step, text: str) -> Step:
    return replace(step, token=text)


def _prob_of(probs: torch.Tensor, token: int | None) -> float:
    return 0.0 if token is None else float(probs[token])


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None
