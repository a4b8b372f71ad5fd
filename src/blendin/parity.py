"""Batched decoding against one row at a time: the same answers, on any device and in any dtype.

Two checks, used by the tests and by ``benchmarks/gpu.py``:

    pass_parity(model, prompts)            one model's next-token probabilities, batched (padded rows,
                                           a shared cache) against each prompt alone, prompt and decode
                                           passes: the largest difference of any probability
    greedy_parity(pair, prompts, config)   a method's greedy answers, batched against alone: where
                                           they part, and how (a near tie, a clearly led token, a
                                           differing stop, a failed run)
    backend_parity(reference, other, ...)  the same answers on two backends (float32 transformers
                                           against llama.cpp's quantized compute), judged the same
                                           way with the other backend's own tie tolerance

In float32 batched and alone agree to rounding. In half precision the two runs add numbers in other
orders, so an answer may part from the other where two tokens (or m_b and gamma) are nearly tied:
that is rounding, not a fault. A parting where one token clearly led is a fault (masks, positions or
cache rows mixed up between rows), as is a probability that moved by more than rounding can, a run
that failed (a row that errors batched, or alone), and answers whose tokens agree but that stopped at
different steps or for different reasons (whether to stop depends on the tokens alone).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# a probability may move this much between batched and alone. Measured on the embedded Gemma-3-270m
# on the CPU: one row in bfloat16 against float32 differs by up to 0.013, batched bfloat16 against one
# row by up to 0.03 after four passes (their caches hold bfloat16 keys); float32 agrees to 1e-9.
PROB_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.1, torch.float16: 0.03}
# and the log-probability of a likely token (top 64; telling for flat distributions too)
LOGPROB_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.5, torch.float16: 0.1}
# at a parting, the decisive gap (top-1 minus top-2, relative to top-1; or |m_b - gamma|) below which it is a near tie
TIE_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 0.25, torch.float16: 0.1}
# across backends, by the other backend: how far its compute moves a probability from the float32
# path's on the same weights (the 99th percentile of the per-step largest |p - q|, forced along the
# float32 answers; benchmarks/llamacpp_parity.py, docs/results/llama-cpp-parity.md: 0.074 on the
# embedded pair's Q4_K_M, 0.044 on the Qwen pair's; the larger is the backend's)
BACKEND_TIE_TOLERANCE = {"llama.cpp": 0.074}


def model_dtype(model) -> torch.dtype:
    """The dtype a model's passes run in (``HFModel.dtype``; float32 for models without torch weights)."""
    return getattr(model, "dtype", torch.float32)


def pass_parity(model, prompts: list[list[int]], steps: int = 4) -> dict:
    """Run ``prompts`` (token ids of different lengths) batched and alone for ``steps`` greedy steps
    each; the largest |p_batched - p_alone| over every token and step (``by_step``: per step; the first
    is the padded prompt pass), and how many argmaxes differ.

    Both runs follow the alone run's tokens, so each step compares the same contexts.
    """
    from .backends.base import forward_sessions

    alone_probs, tokens = [], []
    for ids in prompts:
        s, seq, per_step = model.session(), list(ids), []
        for _ in range(steps):
            s.sync(seq)
            lp = s.logprobs().float()
            per_step.append(lp)
            seq = seq + [int(torch.argmax(lp))]
        getattr(s, "close", lambda: None)()
        alone_probs.append(per_step)
        tokens.append(seq[len(ids):])
    sessions = [model.session() for _ in prompts]
    by_step, log_worst, argmax_differ = [], 0.0, 0
    for step in range(steps):
        for s, ids, toks in zip(sessions, prompts, tokens):
            s.sync(list(ids) + toks[:step])
        forward_sessions(model, sessions)
        by_step.append(0.0)
        for s, per_step in zip(sessions, alone_probs):
            lp, lq = s.logprobs().float(), per_step[step]
            by_step[-1] = max(by_step[-1], float((torch.exp(lp) - torch.exp(lq)).abs().max()))
            top = torch.topk(lq, 64).indices  # log-probabilities of the likeliest tokens: telling even where all are small
            log_worst = max(log_worst, float((lp[top] - lq[top]).abs().max()))
            argmax_differ += int(torch.argmax(lp)) != int(torch.argmax(lq))
    worst = max(by_step)
    for s in sessions:
        getattr(s, "close", lambda: None)()
    dtype = model_dtype(model)
    tolerance, log_tolerance = PROB_TOLERANCE.get(dtype, 1e-4), LOGPROB_TOLERANCE.get(dtype, 1e-3)
    return {"max_prob_diff": worst, "max_logprob_diff_top64": float(f"{log_worst:.3g}"), "by_step": [float(f"{x:.3g}") for x in by_step],
            "argmax_differ": argmax_differ, "compared": steps * len(prompts), "tolerance": [tolerance, log_tolerance],
            "ok": worst <= tolerance and log_worst <= log_tolerance}


@dataclass(frozen=True)
class Parting:
    """Where a batched answer first differs from the same prompt's answer alone, and how.

    kind: "token"  the runs chose different tokens at ``step``; a near tie (``gap`` below
                   TIE_TOLERANCE) is rounding, anything else a fault
          "stop"   the tokens agree as far as both go, but one run stopped where the other went on, or
                   they stopped for different reasons: the stop decision differed, which rounding
                   cannot do (it depends on the tokens alone): a fault
          "error"  a run failed (``GenerationResult.error``): a fault, whatever its tokens
    step: how many tokens agree before the parting. gap: the decisive gap at a "token" parting, in the
    alone run (see TIE_TOLERANCE); 0.0 for the other kinds, which are never near ties.
    alone_stop, batched_stop, alone_tokens, batched_tokens: each run's stop reason and length.
    detail: the cause, in words.
    """

    prompt: int
    step: int
    gap: float
    near_tie: bool
    kind: str = "token"
    detail: str = ""
    alone_stop: str = ""
    batched_stop: str = ""
    alone_tokens: int = 0
    batched_tokens: int = 0


def greedy_parity(pair, prompts: list[str], config, batch_size: int = 8) -> dict:
    """Greedy answers of ``config.method``, batched (``generate_many``) against each prompt alone.

    Returns {"identical": rows with the same tokens and the same stop reason, no error, "rows",
    "agreeing_tokens": tokens before the first difference, summed, "tokens", "partings":
    [Parting as a dict...], "ok": every parting a near tie on a token (an error or a differing stop
    is never ok)}. A row whose run fails, alone or batched, is a parting of kind "error"; the check
    goes on with the other rows.
    """
    from .decoding import generate_many

    config = config.with_(temperature=0.0, trace_top=max(config.trace_top, 2))
    alone = [_alone(pair, p, config) for p in prompts]
    together = dict(generate_many(pair, prompts, config, batch_size=batch_size))
    dtype = max((model_dtype(m) for m in (pair.base, pair.guide) if m is not None), key=lambda d: TIE_TOLERANCE.get(d, 0))
    return compare_answers(alone, [together[i] for i in range(len(prompts))], config, TIE_TOLERANCE.get(dtype, 1e-3),
                           names=("alone", "batched"))


def backend_parity(reference, other, prompts: list[str], config, tie: float | None = None, batch_size: int = 8) -> dict:
    """Greedy answers of ``config.method`` on the ``other`` pair (the same models on another backend:
    llama.cpp) against the ``reference`` pair's (float32 transformers), both batched. A parting is a
    near tie when the reference run's decisive gap is below ``tie`` (default: the other backend's
    ``BACKEND_TIE_TOLERANCE``, by ``config.backend``). The same dict as ``greedy_parity``."""
    from .decoding import generate_many

    config = config.with_(temperature=0.0, trace_top=max(config.trace_top, 2))
    runs = [dict(generate_many(p, prompts, config, batch_size=batch_size)) for p in (reference, other)]
    tie = BACKEND_TIE_TOLERANCE.get(config.backend, TIE_TOLERANCE[torch.float32]) if tie is None else tie
    return compare_answers(*([run[i] for i in range(len(prompts))] for run in runs), config, tie,
                           names=("reference", config.backend), gap=_moved_gap)


def compare_answers(reference: list, other: list, config, tie: float, names=("reference", "compared"), gap=None) -> dict:
    """Each prompt's two answers (``GenerationResult``s, the reference first), where they part and
    how (``Parting``); a token parting is a near tie when the reference's decisive gap is below ``tie``.
    ``names``: the two runs' names in the partings' words; ``gap(step, other_step, gamma)``: the
    decisive gap measured in units of ``tie`` (default: ``_decisive_gap``, relative)."""
    partings, agreeing, total, identical = [], 0, 0, 0
    for i, (a, b) in enumerate(zip(reference, other)):
        n = next((k for k, (x, y) in enumerate(zip(a.steps, b.steps)) if _key(x) != _key(y)), min(len(a.steps), len(b.steps)))
        agreeing += n
        total += len(a.steps)
        parting = _parting(i, n, a, b, config.gamma, tie, names, gap or _decisive_gap)
        if parting is None:
            identical += 1
        else:
            partings.append(parting)
    return {"method": config.method, "identical": identical, "rows": len(reference), "agreeing_tokens": agreeing,
            "tokens": total, "tie_tolerance": tie, "partings": [p.__dict__ for p in partings],
            "ok": all(p.kind == "token" and p.near_tie for p in partings)}


def _key(step) -> tuple:
    return step.token_id, step.source


def _parting(i: int, n: int, a, b, gamma: float, tie: float, names, decisive) -> Parting | None:
    """How answer ``b`` parts from the reference ``a`` after ``n`` agreeing tokens; None: it does not."""
    failed = [(name, r) for name, r in zip(names, (a, b)) if r.error is not None or r.stop_reason == "error"]
    if not failed and n == len(a.steps) == len(b.steps) and a.stop_reason == b.stop_reason:
        return None
    runs = dict(alone_stop=a.stop_reason, batched_stop=b.stop_reason, alone_tokens=len(a.steps), batched_tokens=len(b.steps))
    if failed:
        detail = "; ".join(f"the {name} run failed, {len(r.steps)} tokens in: {r.error or 'no message'}" for name, r in failed)
        return Parting(i, n, 0.0, False, "error", detail, **runs)
    if n == min(len(a.steps), len(b.steps)):  # the same tokens, as far as the shorter goes
        detail = (f"the tokens agree for {n}, but the {names[0]} run stopped ({a.stop_reason}) after {len(a.steps)} "
                  f"and the {names[1]} run ({b.stop_reason}) after {len(b.steps)}: the stop decision differed")
        return Parting(i, n, 0.0, False, "stop", detail, **runs)
    gap = decisive(a.steps[n], b.steps[n], gamma)
    detail = (f"{names[0]} chose token {a.steps[n].token_id} ({a.steps[n].source}), {names[1]} {b.steps[n].token_id} "
              f"({b.steps[n].source}); decisive gap {gap:.3g} against a tie tolerance of {tie:g}")
    return Parting(i, n, gap, gap < tie, "token", detail, **runs)


def _alone(pair, prompt: str, config):
    """``generate`` of one prompt alone, except that a failure comes back in the result (``error``,
    stop reason "error", the steps before it) instead of being raised."""
    from .decoding import Generation, run_rows

    gen = Generation(pair, prompt, config)
    for _ in run_rows([gen]):
        pass
    return gen.result()


def _decisive_gap(alone_step, batched_step, gamma: float) -> float:
    """How clearly the alone run's decision was made where the two runs part: the relative gap between
    the top two tokens of the distribution decoded from, or |m_b - gamma| where they decided differently
    whether to consult the guide."""
    if alone_step.source != batched_step.source and alone_step.base_top_prob is not None:
        return abs(alone_step.base_top_prob - gamma)
    alts = alone_step.alternatives or {}
    ranked = alts.get("blend") if alone_step.source != "base" and "blend" in alts else alts.get(alone_step.source) or alts.get("base")
    if not ranked or len(ranked) < 2 or ranked[0][1] <= 0:
        return 0.0
    return (ranked[0][1] - ranked[1][1]) / ranked[0][1]


def _moved_gap(ref_step, other_step, gamma: float) -> float:
    """The reference's decisive gap in the units of a probability's movement across backends: where
    both runs decided whether to consult the guide differently, |m_b - gamma| (m_b moving by t
    crosses it when it is below t); else half the top two tokens' absolute gap (each moving by t
    swaps them when their gap is below 2t)."""
    if ref_step.source != other_step.source and ref_step.base_top_prob is not None:
        return abs(ref_step.base_top_prob - gamma)
    alts = ref_step.alternatives or {}
    ranked = alts.get("blend") if ref_step.source != "base" and "blend" in alts else alts.get(ref_step.source) or alts.get("base")
    if not ranked or len(ranked) < 2:
        return 0.0
    return (ranked[0][1] - ranked[1][1]) / 2
