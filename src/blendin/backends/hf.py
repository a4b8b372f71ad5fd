"""Local transformers models on torch: full next-token distributions, a KV cache per session.

    model = HFModel.from_folder("~/.cache/blendin/models/gemma-3-270m-1.0.0", name="gemma-3-270m")
    s = model.session(); s.sync(model.tokenizer.encode_prompt("Question: 2+3?\\nAnswer:"))
    s.logprobs().shape  # torch.Size([262144])

Finding and converting models (ids, folders, GGUF files) lives in ``blendin.models``.
Everything runs in float32 on the CPU unless the model was placed elsewhere.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import PrefixSession


class HFTokenizer:
    """Adapts a transformers tokenizer to ``backends.base.Tokenizer``."""

    def __init__(self, tok, extra_eos: Sequence[int] = ()):
        self.tok = tok
        self.eos_id = tok.eos_token_id
        self.eos_ids = frozenset([i for i in [tok.eos_token_id, *extra_eos] if i is not None])
        added_special = [i for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", False)]
        self.special_ids = frozenset(tok.all_special_ids) | frozenset(added_special)
        self._pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
        starts = [p[:1] for p in self._pieces if p]
        self.byte_level = starts.count("Ġ") > starts.count("▁")
        # subtle: some SentencePiece decoders strip the first leading space of a sequence; decoding
        # after an anchor token keeps it, so that pieces of a continuation join up exactly
        self._anchor = tok.encode("a", add_special_tokens=False)
        self._strips = self._decode(tok.encode(" a", add_special_tokens=False)) != " a"

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False) if text else []

    def encode_prompt(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=True)

    def _decode(self, ids) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def decode(self, ids: Sequence[int]) -> str:
        if not self._strips:
            return self._decode(ids)
        head = self._decode(self._anchor)
        return self._decode(list(self._anchor) + list(ids))[len(head) :]

    def pieces(self) -> list[str]:
        return self._pieces

    def chat(self, messages: list[dict]) -> str | None:
        if not getattr(self.tok, "chat_template", None):
            return None
        try:
            return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:  # templates without a system role raise; fold the system text into the user's
            if messages and messages[0]["role"] == "system" and len(messages) > 1:
                merged = {"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}
                return self.tok.apply_chat_template([merged, *messages[2:]], tokenize=False, add_generation_prompt=True)
            raise


class HFModel:
    """A causal LM and its tokenizer. ``vocab_size`` is the logit size (may exceed the tokenizer's)."""

    full_distribution = True

    def __init__(self, model, tokenizer, name: str):
        self.model = model.eval()
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        extra = gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]
        self.tokenizer = HFTokenizer(tokenizer, extra_eos=[i for i in extra if i is not None])
        self.name = name
        self.vocab_size = model.get_output_embeddings().weight.shape[0]

    def session(self) -> "HFSession":
        return HFSession(self.model)


class HFSession(PrefixSession):
    """One context and its KV cache (a plain DynamicCache, which can be cropped at any length)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.cache = self._new_cache()

    @staticmethod
    def _new_cache():
        from transformers import DynamicCache

        # subtle: DynamicCache(config=...) builds sliding-window layers for models like Gemma-3, and
        # those cannot be cropped past the window; plain layers keep everything and crop anywhere
        return DynamicCache()

    def _forward(self, new_ids: list[int]) -> torch.Tensor:
        device = self.model.device
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([new_ids], device=device),
                past_key_values=self.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        self.cache = out.past_key_values
        return torch.log_softmax(out.logits[0, -1].float(), dim=-1).cpu()

    def _truncate(self, keep: int) -> None:
        drop = self.cache.get_seq_length() - keep
        if keep == 0:
            self.cache = self._new_cache()
        elif drop > 0:
            self.cache.crop(-drop)
