"""``echo`` and ``prompt_logprobs`` on /v1/completions: the prompt's own tokens, scored under the
request's method, in front of what is generated after it (OpenAI's legacy API and vLLM answer so;
lm-evaluation-harness scores multiple-choice tasks with it), or by token id beside it (vLLM's
``prompt_logprobs``: [None, {id: {"logprob", "rank", "decoded_token"}}, ...]).

    {"prompt": [[ids...]], "echo": true, "logprobs": 1, "max_tokens": 1, "temperature": 0}

A choice then has the prompt's text and the completion's as ``text``, and ``logprobs`` with one entry
per prompt token (the first null: nothing comes before it) and one per generated token: ``tokens``,
``token_logprobs``, ``top_logprobs`` (the actual token always among them) and ``text_offset`` from
the prompt's start. The prompt is scored in the base's tokens, whatever the method (``scoring``:
the base, the guide through the bridge, switch or BlendIn, each position as the loop decodes it);
its rows share the engine's batch with the completions. ``max_tokens`` 0 asks for the prompt alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..scoring import ScoredRow, check_method
from ..errors import ConfigError


@dataclass(frozen=True)
class ScoreJob:
    """An engine job: score ``ids`` (base vocabulary) from ``start`` on, for prompt number ``prompt``
    of its request, keeping the ``top`` tokens at each position. ``start`` is 1 (every token after
    the first), or 2 where the server put the base's start token before a prompt that lacked it
    (``Service.with_start``): the prompt's positions are scored as the model reads them, after it."""

    ids: tuple[int, ...]
    prompt: int
    top: int = 0
    start: int = 1

    @property
    def base_ids(self) -> tuple[int, ...]:
        return self.ids

    def row(self, pair, config) -> ScoredRow:
        return ScoredRow(pair, list(self.ids), self.start, config, self.top)


def echo_problem(config, has_base: bool) -> str | None:
    """Why this server cannot echo under ``config`` (None: it can)."""
    if not has_base:
        return "echo scores the prompt in the base model's tokens, and this server has no base model"
    try:
        check_method(config)
    except ConfigError as exc:
        return f"echo with {exc}"
    return None


def score_jobs(prompts: list[list[int]], config, top: int, lead: int | None) -> list[tuple[ScoreJob, object]]:
    """One job per prompt of two tokens or more (a one-token prompt has nothing to score); ``lead``:
    the base's start token, read first where a prompt does not begin with it (None: the base has none)."""
    jobs = []
    for p, ids in enumerate(prompts):
        if len(ids) < 2:
            continue
        added = lead is not None and ids[0] != lead
        jobs.append((ScoreJob(tuple([lead, *ids] if added else ids), p, top, 2 if added else 1), config))
    return jobs


def scored_by_prompt(jobs, results) -> dict:
    """{prompt number: its scoring row's GenerationResult}."""
    return {job.prompt: result for (job, _), result in zip(jobs, results) if isinstance(job, ScoreJob)}


def prompt_logprobs(ids: list[int], tok, scored, k: int) -> list:
    """vLLM's ``prompt_logprobs`` of one prompt: None for its first token, then for each token a dict
    {token id: {"logprob", "rank", "decoded_token"}} of the top ``k`` and the actual token."""
    out = [None]
    for t in (scored.scored.tokens if scored is not None else ()):
        entry = {str(i): {"logprob": _finite(lp), "rank": r, "decoded_token": tok.decode([i])} for r, (i, lp) in enumerate(t.top[:k], 1)}
        entry[str(t.token_id)] = {"logprob": _finite(t.logprob), "rank": t.rank, "decoded_token": tok.decode([t.token_id])}
        out.append(entry)
    return out


def _finite(logprob: float) -> float:
    return max(logprob, -9999.0)  # JSON has no -inf: a token of probability 0, as the logprobs say it


def echo_choice(ids: list[int], tok, scored, generated, k: int | None, completion_logprobs, spell) -> tuple[str, dict | None]:
    """(text, logprobs) of one echoed choice: the prompt ``ids`` (``scored``: its scoring row's result,
    None for a one-token prompt), then the ``generated`` result (None with max_tokens 0)."""
    steps = [*(scored.steps if scored is not None else ()), *(generated.steps if generated is not None else ())]
    prompt_text = tok.decode(list(ids))
    text = prompt_text + (generated.text if generated is not None else "")
    if k is None:
        return text, None
    first = tok.decode([ids[0]])
    rest = completion_logprobs(steps, k, spell)
    prompt_steps = len(scored.steps) if scored is not None else 0
    offsets, pos = [0], len(first)
    for j, s in enumerate(steps):
        if j == prompt_steps:  # the completion starts where the prompt's text ends (a leading special token has none)
            pos = len(prompt_text)
        offsets.append(pos)
        pos += len(s.token)
    return text, {"tokens": [first, *rest["tokens"]], "token_logprobs": [None, *rest["token_logprobs"]],
                  "top_logprobs": [None, *rest["top_logprobs"]], "text_offset": offsets}
