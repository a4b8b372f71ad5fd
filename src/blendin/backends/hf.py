"""Local transformers models on torch: full next-token distributions, a KV cache per session.

    model = HFModel.from_folder("~/.cache/blendin/models/gemma-3-270m-1.0.0", name="gemma-3-270m")
    s = model.session(); s.sync(model.tokenizer.encode_prompt("Question: 2+3?\\nAnswer:"))
    s.logprobs().shape  # torch.Size([262144])

Finding and converting models (ids, folders, GGUF files) lives in ``blendin.models``, placing them
on a device and in a dtype in ``blendin.placement``. Everything a pass needs (ids, positions, masks,
cache rows) is put on the model's device, and the next-token logprobs stay there (float32): the
decoding loop reads single numbers from them, never whole vocabularies.
"""

from __future__ import annotations

import time
import weakref
from typing import Sequence

import torch

from .base import PrefixSession, common_prefix
from .cost import PassCost


class HFTokenizer:
    """Adapts a transformers tokenizer to ``backends.base.Tokenizer``."""

    def __init__(self, tok, extra_eos: Sequence[int] = ()):
        self.tok = tok
        added_special = [i for i, t in tok.added_tokens_decoder.items() if getattr(t, "special", False)]
        self.special_ids = frozenset(tok.all_special_ids) | frozenset(added_special)
        self.eos_ids = end_token_ids(tok, extra_eos, self.special_ids)
        self.eos_id = tok.eos_token_id if tok.eos_token_id is not None else min(self.eos_ids, default=None)
        self._pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
        starts = [p[:1] for p in self._pieces if p]
        self.byte_level = starts.count("Ġ") > starts.count("▁")
        # subtle: some SentencePiece decoders strip the first leading space of a sequence; decoding
        # after an anchor token keeps it, so that pieces of a continuation join up exactly
        # (a normalizer that prepends '▁' unconditionally encodes " a" as "▁▁a", which hides the strip
        # from the first test; the second sees it: "a" decodes differently alone and after the anchor)
        self._anchor = tok.encode("a", add_special_tokens=False)
        alone = self._decode(self._anchor)
        self._strips = (
            self._decode(tok.encode(" a", add_special_tokens=False)) != " a"
            or self._decode(self._anchor * 2)[len(alone) :] != alone
        )
        # subtle: SentencePiece tokenizers with a dummy prefix (Llama-2, Mistral) encode "Hello" as
        # "▁Hello", which reads " Hello"; a continuation must not gain that space, so it is encoded
        # after a head text that cannot merge with it (the unknown token, a newline) and the head's
        # ids are dropped. Only heads that round-trip some probes here are kept, tried in order.
        self._heads: list[tuple[str, list[int]]] = []
        if self.decode(self._encode_plain("a")) == " a":
            self._heads = self._find_heads()

    def _encode_plain(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def _find_heads(self) -> list[tuple[str, list[int]]]:
        probes = ("a", " a", "a b", "ab.", "  a", "1 a")
        found = []
        for head in dict.fromkeys([str(self.tok.unk_token or ""), "\n"]):
            head_ids = self._encode_plain(head) if head else []
            if head_ids and all(self._decodes_to(self._encode_after(head, head_ids, p), p) for p in probes):
                found.append((head, head_ids))
        return found

    def _decodes_to(self, ids: list[int] | None, text: str) -> bool:
        return ids is not None and self.decode(ids) == text

    def _encode_after(self, head: str, head_ids: list[int], text: str) -> list[int] | None:
        """The ids of ``text`` encoded after ``head``, or None when the head's ids are not a prefix."""
        ids = self._encode_plain(head + text)
        n = len(head_ids)
        return ids[n:] if len(ids) > n and ids[:n] == head_ids else None

    def encode(self, text: str) -> list[int]:
        if not text:
            return []
        for head, head_ids in self._heads:
            ids = self._encode_after(head, head_ids, text)
            if ids is not None:
                return ids
        return self._encode_plain(text)

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


# Control tokens that end a turn or a document, by their text (llama.cpp marks "end of generation"
# tokens the same way); only counted where the tokenizer has them as special tokens.
END_TOKEN_TEXTS = frozenset({
    "<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>",
    "<EOT>", "<|return|>", "<end_of_utterance>", "</s>", "<eos>", "<|end▁of▁sentence|>", "<｜end▁of▁sentence｜>",
})


def end_token_ids(tok, extra: Sequence[int] = (), special_ids: frozenset[int] = frozenset()) -> frozenset[int]:
    """Every id that ends a generation: the tokenizer's eos, ``extra`` (the generation config's
    ``eos_token_id``, which may be a list), the chat template's end of turn, and special tokens
    spelled as one of ``END_TOKEN_TEXTS``. A model may stop with any of them: Qwen2.5 ends a chat
    turn with ``<|im_end|>`` and a document with ``<|endoftext|>``; Gemma a turn with ``<end_of_turn>``."""
    ids = {i for i in [tok.eos_token_id, *extra] if i is not None}
    ids |= {i for i in special_ids if tok.convert_ids_to_tokens(i) in END_TOKEN_TEXTS}
    end_of_turn = _template_end_of_turn(tok)
    if end_of_turn is not None and end_of_turn in special_ids:
        ids.add(end_of_turn)
    return frozenset(ids)


def _template_end_of_turn(tok) -> int | None:
    """The first token the chat template writes after an assistant message, or None."""
    if not getattr(tok, "chat_template", None):
        return None
    mark = "blendin-end-of-turn-probe"
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": mark}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template that cannot render this; the other sources still count
        return None
    after = text.split(mark, 1)[1] if mark in text else ""
    ids = tok.encode(after, add_special_tokens=False) if after.strip() else []
    return ids[0] if ids else None


class HFModel:
    """A causal LM and its tokenizer. ``vocab_size`` is the logit size (may exceed the tokenizer's).

    Capabilities: ``full_distribution``; ``batched`` when its attention layers are plain or
    sliding-window (then all sessions share one ``SlotCache`` and ``forward_batch`` runs many
    sessions in one pass); other architectures get one DynamicCache per session.
    """

    full_distribution = True
    drafts = True  # a pass returns the distributions after drafted tokens too

    def __init__(self, model, tokenizer, name: str):
        self.model = model.eval()
        gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        extra = gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]
        self.tokenizer = HFTokenizer(tokenizer, extra_eos=[i for i in extra if i is not None])
        self.name = name
        self.device = model.device  # where its passes run and its logprobs stay
        self.dtype = model.dtype  # of its weights (its logprobs are float32 whatever this is)
        self.vocab_size = model.get_output_embeddings().weight.shape[0]
        self.context_length = getattr(model.config, "max_position_embeddings", None)  # tokens, or None if unknown
        layer_types = set(getattr(model.config, "layer_types", None) or [])
        self.batched = layer_types <= {"full_attention", "sliding_attention"} and model.config._attn_implementation == "sdpa"
        self.runner = SlotRunner(model) if self.batched else None

    def session(self):
        return SlotSession(self.runner) if self.batched else HFSession(self.model)

    def forward_batch(self, sessions: list) -> None:
        """Compute next-token logprobs for many sessions of this model in one padded pass."""
        self.runner.forward(sessions)


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
        return self._forward_rows(new_ids, 1)[0]

    def _forward_rows(self, new_ids: list[int], keep: int) -> torch.Tensor:
        device = self.model.device
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([new_ids], device=device),
                past_key_values=self.cache,
                use_cache=True,
                logits_to_keep=keep,
            )
        self.cache = out.past_key_values
        return torch.log_softmax(out.logits[0, -keep:].float(), dim=-1)  # [keep, V]

    def _truncate(self, keep: int) -> None:
        drop = self.cache.get_seq_length() - keep
        if keep == 0:
            self.cache = self._new_cache()
        elif drop > 0:
            self.cache.crop(-drop)


class SlotCache:
    """Keys and values of many sessions of one model, one row ("slot") per session.

    Per layer: keys/values [slots, kv_heads, capacity, head_dim]. A session's first ``n`` positions
    are valid, where ``n`` is what its ``PrefixSession`` says is cached; anything after is garbage
    that the masks hide and later writes overwrite. During a pass the model calls ``update``, which
    writes the new keys/values where ``begin`` said and returns the rows' keys/values up to ``kv_len``.
    Position ``capacity - 1`` is a scratch cell for the padding of shorter tails.
    """

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.slots = 0  # rows allocated
        self.capacity = 0
        self.used = 0  # rows ever handed out
        self.free: list[int] = []

    def open(self) -> int:
        return self.free.pop() if self.free else self._next_slot()

    def _next_slot(self) -> int:
        self.used += 1
        return self.used - 1

    def close(self, slot: int) -> None:
        self.free.append(slot)

    def reserve(self, capacity: int) -> None:
        """Grow (rarely: in steps) so that every handed-out row fits ``capacity`` positions."""
        slots = max(self.slots, self.used)
        if capacity > self.capacity:
            capacity = max(capacity, int(self.capacity * 1.5), 256)
        else:
            capacity = self.capacity
        if slots > self.slots:
            slots = max(slots, 2 * self.slots)
        if (slots, capacity) == (self.slots, self.capacity):
            return
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                new = old.new_zeros((slots, old.shape[1], capacity, old.shape[3]))
                new[: old.shape[0], :, : old.shape[2]] = old
                store[i] = new
        self.slots, self.capacity = slots, capacity

    def begin(self, rows: torch.Tensor, write: torch.Tensor, kv_len: int, device=None) -> None:
        """Set up a pass: batch row r is slot rows[r]; its query i writes at position write[r, i].
        ``rows``/``write`` come on the CPU and are moved to ``device`` (the cache's) once per pass."""
        first = int(rows[0])
        self._span = slice(first, first + len(rows)) if torch.equal(rows, torch.arange(first, first + len(rows))) else None
        self.rows, self.write, self.kv_len = rows.to(device), write.to(device), kv_len

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        """key/value_states [S, kv_heads, T, head_dim] -> the rows' keys/values [S, kv_heads, kv_len, head_dim]."""
        if layer_idx == len(self.keys):  # first pass: allocate this layer
            _, heads, _, dim = key_states.shape
            self.keys.append(key_states.new_zeros((self.slots, heads, self.capacity, dim)))
            self.values.append(value_states.new_zeros((self.slots, heads, self.capacity, dim)))
        out = []
        for store, new in ((self.keys, key_states), (self.values, value_states)):
            full = store[layer_idx]
            full[self.rows[:, None], :, self.write, :] = new.transpose(1, 2)
            part = full[:, :, : self.kv_len]
            out.append(part[self._span] if self._span is not None else part.index_select(0, self.rows))
        return out[0], out[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0  # positions are always passed explicitly


class SlotRunner:
    """Runs one padded forward pass for many sessions that share a ``SlotCache``.

    Tails (the tokens each session has not read yet) are left-padded to the longest, so every row's
    last real token is the last position and ``logits_to_keep=1`` gives each row's next-token logits.
    Masks are built here: causal per row over its own valid positions, and windowed for
    sliding-window layers.

    Rows that begin alike (one question under several methods, one system prompt for many requests)
    read their common beginning once: a tail that starts with what another open session already
    holds copies those keys and values from that session's row instead of running them
    (``tokens_shared``), and of several sessions about to read the same new beginning in one call,
    one reads it and the others copy it after. Keys and values depend only on the tokens and their
    positions, so a copied row is the row the model would have written.
    """

    SHARE_MIN = 16  # the shortest common beginning worth copying rather than reading

    def __init__(self, model):
        self.model = model
        self.cache = SlotCache()
        self.open: weakref.WeakSet = weakref.WeakSet()  # sessions holding a row (possible donors)
        self.passes = 0  # counters, for benchmarks
        self.tokens_read = 0  # real tokens run through the model
        self.tokens_padded = 0  # padding run alongside them
        self.tokens_shared = 0  # tokens copied from another session's row instead of read
        self.seconds = 0.0  # wall time inside the model
        self.cost = PassCost()  # what a pass of one row costs here by tokens read (``--speculate auto``)
        self.draft_record: dict = {}  # drafter -> tokens of its drafts taken, drafts cut short (auto)
        config = model.config
        self.layer_types = sorted(set(getattr(config, "layer_types", None) or []))
        self.window = getattr(config, "sliding_window", None)

    # A pass costs about a fixed amount (reading the weights) plus a little per token; padding
    # tokens cost like real ones. Up to this many padding tokens, one pass beats two.
    PAD_BUDGET = 32

    def forward(self, sessions: list) -> None:
        """Run the sessions' pending tails, in as few passes as padding allows."""
        later = self._share(sessions)
        waiting = {id(s) for s in later}
        self._passes([s for s in sessions if id(s) not in waiting])
        if later:
            self._share(later)  # the leaders have read the common beginnings: copy them
            self._passes(later)

    def _passes(self, sessions: list) -> None:
        for group in group_by_length(sessions, lambda s: len(s.pending()[1]), self.PAD_BUDGET):
            self._pass(sorted(group, key=lambda s: s.slot))

    def _share(self, sessions: list) -> list:
        """Copy into each session's row the longest beginning of its tail that an open session
        holds; return the sessions to run after the others because one of those others is about
        to read the same beginning."""
        later, leaders = [], []
        for s in sorted(sessions, key=lambda s: s.slot):
            start, tail = s.pending()
            if len(tail) <= self.SHARE_MIN:
                continue
            donor, upto = None, start
            for other in list(self.open):
                if other is not s and other.slot is not None and other._cached > upto:
                    n = min(common_prefix(other.ids[: other._cached], s.ids), len(s.ids) - 1)
                    if n > upto:
                        donor, upto = other, n
            if upto - start >= self.SHARE_MIN:
                self._copy(donor, s, start, upto)
            elif any(min(common_prefix(lead.ids, s.ids), len(s.ids) - 1) - start >= self.SHARE_MIN for lead in leaders):
                later.append(s)
            else:
                leaders.append(s)
        return later

    def _copy(self, donor, session, start: int, upto: int) -> None:
        """Positions [start, upto) of ``donor``'s row into ``session``'s (same tokens, same positions)."""
        cache = self.cache
        cache.reserve(upto + 1)
        with torch.inference_mode():  # the layers a pass allocated are inference tensors
            for store in (cache.keys, cache.values):
                for layer in store:
                    layer[session.slot, :, start:upto] = layer[donor.slot, :, start:upto]
        session.adopt(upto)
        self.tokens_shared += upto - start

    def _pass(self, sessions: list) -> None:
        starts, tails = zip(*(s.pending() for s in sessions))
        S, T = len(sessions), max(len(t) for t in tails)
        real_tokens = sum(len(t) for t in tails)
        self.passes, self.tokens_read, self.tokens_padded = self.passes + 1, self.tokens_read + real_tokens, self.tokens_padded + S * T - real_tokens
        kv_len = max(st + len(t) for st, t in zip(starts, tails))
        cache = self.cache
        cache.reserve(kv_len + 1)
        scratch = cache.capacity - 1
        ids = torch.zeros((S, T), dtype=torch.long)
        pos = torch.zeros((S, T), dtype=torch.long)
        write = torch.full((S, T), scratch, dtype=torch.long)
        for r, (st, tail) in enumerate(zip(starts, tails)):
            n = len(tail)
            ids[r, T - n :] = torch.tensor(tail)
            pos[r, T - n :] = torch.arange(st, st + n)
            write[r, T - n :] = pos[r, T - n :]
        keys = torch.arange(kv_len)
        real = write != scratch  # [S, T]
        causal = keys[None, None, :] <= pos[:, :, None]  # [S, T, kv_len]
        pad_view = keys[None, None, :] == 0  # padding queries look at one cell; their output is dropped
        full = torch.where(real[:, :, None], causal, pad_view)[:, None]
        if self.layer_types:
            masks = {}
            for kind in self.layer_types:
                if kind == "sliding_attention" and self.window:
                    inside = keys[None, None, :] > pos[:, :, None] - self.window
                    masks[kind] = torch.where(real[:, :, None], causal & inside, pad_view)[:, None]
                else:
                    masks[kind] = full
        else:
            masks = full
        rows = torch.tensor([s.slot for s in sessions])
        device = self.model.device
        cache.begin(rows, write, kv_len, device)
        if isinstance(masks, dict):
            masks = {kind: m.to(device) for kind, m in masks.items()}
        else:
            masks = masks.to(device)
        wanted = [s.wanted() for s in sessions]  # positions each row needs back: 1, or a draft's
        keep = max(wanted)  # <= T: a row's wanted positions are its last real tokens
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model(
                input_ids=ids.to(device),
                position_ids=pos.to(device),
                attention_mask=masks,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=keep,
            )
        logprobs = torch.log_softmax(out.logits[:, -keep:].float(), dim=-1)  # [S, keep, V], on the device
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # so that `seconds` is the pass's time, not its launch's
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        if S == 1:
            self.cost.add(T, elapsed)
        for r, (s, w) in enumerate(zip(sessions, wanted)):
            s.store(logprobs[r, -1] if w == 1 else logprobs[r, keep - w :])


def group_by_length(items: list, length, pad_budget: int) -> list[list]:
    """Split items into groups to be padded to their longest, each wasting <= pad_budget padding.

    >>> group_by_length([1, 28, 1, 1, 27], lambda n: n, 32)
    [[1, 1, 1], [27, 28]]
    """
    groups: list[list] = []
    total = 0
    for item in sorted(items, key=length):
        n = length(item)
        if groups and (len(groups[-1]) + 1) * n - (total + n) <= pad_budget:
            groups[-1].append(item)
            total += n
        else:
            groups.append([item])
            total = n
    return groups


class SlotSession(PrefixSession):
    """A session whose cache is one row of its model's ``SlotCache``; close it to free the row."""

    def __init__(self, runner: SlotRunner):
        super().__init__()
        self.runner = runner
        self.slot = runner.cache.open()
        runner.open.add(self)

    def adopt(self, cached: int) -> None:
        """The row now holds the first ``cached`` ids (copied in by the runner)."""
        self._cached = cached
        self._logprobs = None

    def _run(self) -> None:
        self.runner.forward([self])

    def _truncate(self, keep: int) -> None:
        pass  # positions after `keep` are simply overwritten by the next pass

    def close(self) -> None:
        if self.slot is not None:
            self.runner.open.discard(self)
            self.runner.cache.close(self.slot)
            self.slot = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
