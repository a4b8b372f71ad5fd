"""BlendIn inside transformers' ``generate()``: a logits processor that brings the guide in.

    from blendin.hf_generate import BlendInProcessor
    blend = BlendInProcessor(base_tokenizer, guide_model, guide_tokenizer, ["What is 2+3?"],
                             BlendConfig(method="blendin", gamma=0.4), base_model=base_model)
    out = base_model.generate(**blend.inputs(), logits_processor=[blend], max_new_tokens=64, pad_token_id=blend.pad_token_id)
    blend.results()[0].interventions          # per row: steps, interventions, mean alpha, ...

Each call hands the processor the base's next-token logits for every row; they become, for that
row, the base's distribution in blendin's own decoding loop (``decoding.Generation``, fed instead
of run): the gamma gate, the guide's pass where the base is unsure (its cache kept between steps,
through the vocabulary bridge for a guide of another tokenizer), alpha, the mixture and the
sampler decide the token exactly as ``blendin generate`` does, and the processor returns logits
that leave that token alone possible. So greedy or sampled (BlendConfig's temperature, top_p and
seed; generate's own sampling then has one token to pick), the tokens are blendin's, a
``TextStreamer`` streams them as usual, and the per-row statistics are ``results()``.

Methods: base, switch, blendin (one token per base pass; nudging's words and the guide alone do not
fit a processor of the base's logits). The questions are rendered for both models as blendin renders
them (the base: plain text, the guide: its chat template); ``inputs()`` gives the base's left-padded
batch for them. Rows stop where blendin would (its end tokens, ``max_new_tokens``, stop strings):
from then on the processor allows only the base's end token, which generate pads with.
"""

from __future__ import annotations

import torch

from .backends.base import PrefixSession
from .backends.hf import HFModel
from .config import BlendConfig
from .decoding import Generation
from .driver import Rows
from .errors import ConfigError
from .pair import Pair
from .prompts import Rendered, prompt_ids

METHODS = ("base", "switch", "blendin")


class BlendInProcessor:
    """A ``transformers.LogitsProcessor`` (callable on (input_ids [B, L], scores [B, V_base])) that
    decodes ``questions`` with ``config``'s method; one row per question, in order."""

    def __init__(self, base_tokenizer, guide_model, guide_tokenizer, questions: list[str], config: BlendConfig | None = None,
                 base_model=None, base_name: str = "base", guide_name: str = "guide"):
        config = config or BlendConfig()
        if config.method not in METHODS:
            raise ConfigError(f"method '{config.method}' cannot run inside generate(): it writes whole words or runs the guide alone; "
                              f"use one of {', '.join(METHODS)}, or blendin generate")
        if not questions or any(not q or not q.strip() for q in questions):
            raise ConfigError("every question needs text")
        guide = guide_model if isinstance(guide_model, HFModel) else HFModel(guide_model, guide_tokenizer, guide_name)
        self.base = FedModel(base_tokenizer, base_model, base_name, device=getattr(guide, "device", None))
        self.pair = Pair(base=self.base, guide=guide)
        self.config = config
        fmt = config.prompt
        self.rendered = [Rendered(tuple(prompt_ids(self.base.tokenizer, fmt, q, chat=fmt.base_prompt == "chat")),
                                  tuple(prompt_ids(guide.tokenizer, fmt, q, chat=True))) for q in questions]
        self.rows = [Generation(self.pair, r, config) for r in self.rendered]
        self._batch = Rows(self.rows)  # every row open at once: generate() decodes them all each call
        self._index = {row: i for i, row in enumerate(self.rows)}  # a row's place in generate()'s batch
        self._end = min(self.base.tokenizer.eos_ids)

    @property
    def pad_token_id(self) -> int:
        """The base's end token: what ``inputs()`` pads with, and what generate() should pad ended rows with."""
        return self._end

    def inputs(self) -> dict:
        """{"input_ids", "attention_mask"}: the base's prompts, left-padded (with its end token)."""
        width = max(len(r.base_ids) for r in self.rendered)
        ids = torch.full((len(self.rendered), width), self._end, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(self.rendered):
            ids[i, width - len(r.base_ids):] = torch.tensor(r.base_ids)
            mask[i, width - len(r.base_ids):] = 1
        device = getattr(self.base, "device", None) or "cpu"
        return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """One step for every row: the logits [B, V] a token is picked from (only blendin's token left).
        Columns past the base's vocabulary (a model's logits padded past its tokenizer) get probability
        0 in blendin's distribution and are never chosen."""
        if scores.shape[0] != len(self.rows):
            raise ConfigError(f"generate() decodes {scores.shape[0]} rows and the processor was made for {len(self.rows)} questions; "
                              "pass blend.inputs() (one row per question, no num_return_sequences)")
        chosen = self._step(self._base_logprobs(scores))
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(chosen)), torch.tensor(chosen, device=scores.device)] = 0.0
        return out

    def _base_logprobs(self, scores: torch.Tensor) -> torch.Tensor:
        """The base's log-probabilities [B, V_base] from generate()'s logits [B, V_logits]: padded
        columns past V_base dropped, missing ones (a tokenizer with tokens the model never scores)
        at -inf; on the device the logits are on (the bridge follows them there once)."""
        vocab = self.base.vocab_size
        logits = scores.float()[:, :vocab]
        if logits.shape[1] < vocab:
            logits = torch.cat([logits, logits.new_full((logits.shape[0], vocab - logits.shape[1]), float("-inf"))], dim=1)
        if self.base.device is None or torch.device(self.base.device) != scores.device:
            self.base.device = scores.device
            self.pair.bridge = self.pair.bridge.to(scores.device)
        return torch.log_softmax(logits, dim=-1)

    def _step(self, base_logprobs: torch.Tensor) -> list[int]:
        """Drive every row to its next token (``driver.Rows``): the rows waiting on their base are
        fed this call's distributions, then every row runs, the guide's passes batched across rows,
        until each has its token and waits on its base again (or has ended: its end token)."""
        chosen: dict = {}
        chosen.update(self._advance())  # the first call starts the rows: each asks for its base first
        on_base = [row for row, need in self._batch.waiting.items() if need.track is row.base]
        for row in on_base:
            self.base.feed(self._batch.waiting[row].track.session, base_logprobs[self._index[row]])
        if on_base:
            self._batch.serve(on_base)
        while True:
            chosen.update(self._advance())
            others = [row for row, need in self._batch.waiting.items() if need.track is not row.base]
            if not others:
                return [chosen.get(row, self._end) for row in self.rows]
            self._batch.serve(self._batch.next_group(others))

    def _advance(self) -> dict:
        """Run the rows; {row: its token} for each that decoded one (one per call: one per base pass)."""
        return {row: step.token_id for row, step in self._batch.advance() if step is not None}

    def results(self):
        """Each row's ``GenerationResult`` (text, steps, interventions, mean alpha...), in order."""
        return [row.result() for row in self.rows]


class FedModel:
    """The base as generate() runs it: a tokenizer and sessions whose distributions are handed in
    (``feed``), never computed here."""

    full_distribution = True

    def __init__(self, tokenizer, model=None, name: str = "base", device=None):
        """Without ``model`` (the point of a processor: generate() brings the base's logits), the
        vocabulary is the tokenizer's and the device the guide's until the first logits say otherwise."""
        if model is not None:
            hf = HFModel(model, tokenizer, name)  # for its tokenizer's end tokens and the logit size
            self.tokenizer, self.vocab_size, self.device = hf.tokenizer, hf.vocab_size, hf.device
        else:
            from .backends.hf import HFTokenizer

            self.tokenizer, self.vocab_size, self.device = HFTokenizer(tokenizer), len(tokenizer), device or "cpu"
        self.name, self.context_length = name, None

    def session(self) -> "FedSession":
        return FedSession()

    @staticmethod
    def feed(session: "FedSession", logprobs: torch.Tensor) -> None:
        session.store(logprobs)


class FedSession(PrefixSession):
    def _forward(self, new_ids: list[int]) -> torch.Tensor:
        raise RuntimeError("the base's distribution comes from generate(); nothing was fed for this step")

    def _truncate(self, keep: int) -> None:
        pass
