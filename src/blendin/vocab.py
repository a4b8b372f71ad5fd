"""The bridge between two vocabularies: guide token ids -> base token ids, by surface string.

Blending happens in the base's vocabulary. Each guide token is matched to the base token with the
same surface bytes, after normalising the two common piece spellings:

    SentencePiece   '▁world' -> b' world',  '<0x0A>' -> b'\\n'  (byte fallback)
    byte-level BPE  'Ġworld' -> b' world',  'Ċ' -> b'\\n'        (GPT-2's byte-to-unicode table)

- The guide's end tokens (end of sequence and end of turn) map to the base's end-of-sequence token.
- One tokenizer on both sides (``identity``): each token is its own twin, but control tokens are still
  dropped and end tokens still land on one of the base's end tokens, so a guided answer ends.
- A guide token with no exact counterpart *projects* onto the first base token of its re-encoding
  (SmolLM2's 'Ġmuff' has no Gemma twin, so its mass goes to Gemma's first token of ' muff'), so
  probability mass is not silently dropped. Bytes that are not valid UTF-8 on their own go to the
  base token of their first byte.
- Other control tokens (chat markers and the like) have no counterpart and are dropped; their mass
  is reported by ``mass_exact`` and the result's ``vocab_coverage``.

Not handled: tokens that differ only by normalisation (NFKC, case); added tokens that are not
special are matched by their raw text.
"""

from __future__ import annotations

import re
from functools import lru_cache

import torch

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable-unicode -> byte table (the inverse of its ``bytes_to_unicode``)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def surface(piece: str, byte_level: bool) -> tuple[bytes, bool]:
    """(surface bytes, is_byte_fallback) of one vocabulary piece.

    >>> surface('▁world', byte_level=False), surface('<0x0A>', byte_level=False)
    ((b' world', False), (b'\\n', True))
    >>> surface('Ġworld', byte_level=True), surface('Ċ', byte_level=True)
    ((b' world', False), (b'\\n', False))
    """
    if byte_level:
        table = _byte_decoder()
        if all(c in table for c in piece):
            return bytes(table[c] for c in piece), False
        return piece.encode("utf-8"), False  # an added token spelled in plain text
    m = _BYTE_PIECE.fullmatch(piece)
    if m:
        return bytes([int(m.group(1), 16)]), True
    return piece.replace("▁", " ").encode("utf-8"), False


class VocabBridge:
    """Carries guide distributions [V_guide] into the base vocabulary [V_base].

    guide_to_base: long tensor [V_guide], the base id of each guide id, -1 where dropped.
    exact: bool tensor [V_guide], True where the surface strings match exactly.
    ``V_*`` are the models' logit sizes, which may exceed their tokenizers' vocabularies.
    """

    def __init__(self, guide_to_base: torch.Tensor, exact: torch.Tensor, base_size: int, guide_vocab: int, identity=False,
                 device="cpu"):
        self.device = torch.device(device)  # where to_base works: the base's device
        self._lookup = guide_to_base.tolist()  # base_id reads this, not a tensor that may sit on a GPU
        self.guide_vocab = guide_vocab
        self.guide_to_base = guide_to_base.to(self.device)
        self.exact = exact.to(self.device)
        self.base_size = base_size
        self.identity = identity
        self._valid = torch.nonzero(self.guide_to_base >= 0).squeeze(1)  # guide ids that map somewhere
        self._target = self.guide_to_base[self._valid]
        if identity:  # the cheap path: keep in place, drop controls, move end tokens' mass
            self._keep = self.guide_to_base == torch.arange(len(guide_to_base), device=self.device)  # [V_guide] bool
            self._moved = torch.nonzero((self.guide_to_base >= 0) & ~self._keep).squeeze(1)
        self.exact_share = float(exact[:guide_vocab].sum()) / max(guide_vocab, 1)

    def to(self, device) -> "VocabBridge":
        """The same bridge working on ``device`` (itself if it is there already)."""
        if torch.device(device) == self.device:
            return self
        return VocabBridge(self.guide_to_base.cpu(), self.exact.cpu(), self.base_size, self.guide_vocab, self.identity, device)

    @classmethod
    def build(cls, guide_tok, base_tok, guide_size: int, base_size: int) -> "VocabBridge":
        """Match two tokenizers (see the module docstring). Sizes are the models' logit sizes."""
        gp, bp = guide_tok.pieces(), base_tok.pieces()
        if gp == bp:
            # One tokenizer: every token is its own twin, except that control tokens are dropped and
            # the guide's end tokens (end of turn too) land on an end token of the base.
            ids = torch.arange(guide_size)
            ids[ids >= min(base_size, len(bp))] = -1
            for gid in guide_tok.special_ids | guide_tok.eos_ids:
                if gid < guide_size:
                    ids[gid] = _end_target(gid, guide_tok, base_tok)
            return cls(ids, ids >= 0, base_size, len(gp), identity=True)

        exact_index: dict[bytes, int] = {}
        byte_index: dict[bytes, int] = {}
        for bid, piece in enumerate(bp[:base_size]):
            if piece is None or bid in base_tok.special_ids:
                continue
            s, is_byte = surface(piece, base_tok.byte_level)
            if s:
                (byte_index if is_byte else exact_index).setdefault(s, bid)

        def lookup(s: bytes) -> int | None:
            return exact_index.get(s, byte_index.get(s))

        guide_to_base = torch.full((guide_size,), -1, dtype=torch.long)
        exact = torch.zeros(guide_size, dtype=torch.bool)
        projected: dict[int, bytes] = {}
        for gid, piece in enumerate(gp[:guide_size]):
            if piece is None:
                continue
            if gid in guide_tok.eos_ids and base_tok.eos_id is not None:
                guide_to_base[gid], exact[gid] = base_tok.eos_id, True
                continue
            if gid in guide_tok.special_ids:
                continue
            s, _ = surface(piece, guide_tok.byte_level)
            bid = lookup(s) if s else None
            if bid is not None:
                guide_to_base[gid], exact[gid] = bid, True
            elif s:
                projected[gid] = s
        for gid, bid in _project(projected, base_tok, lookup).items():
            guide_to_base[gid] = bid
        return cls(guide_to_base, exact, base_size, len(gp))

    def to_base(self, guide_probs: torch.Tensor) -> torch.Tensor:
        """guide_probs [V_guide] -> base-vocabulary probs [V_base], renormalised over the mapped mass.

        Several guide tokens may land on one base token: their probabilities add up. Pure. The result
        is on the bridge's device (the base's), wherever ``guide_probs`` was.
        """
        guide_probs = guide_probs.to(self.device)
        if self.identity and guide_probs.shape[0] == self.base_size:
            out = torch.where(self._keep, guide_probs, torch.zeros((), dtype=guide_probs.dtype))
            if len(self._moved):
                out.index_add_(0, self.guide_to_base[self._moved], guide_probs[self._moved])
            total = out.sum()
            return out / total if total > 0 else out
        out = torch.zeros(self.base_size, dtype=guide_probs.dtype, device=self.device)
        out.index_add_(0, self._target, guide_probs[self._valid])
        total = out.sum()
        return out / total if total > 0 else out

    def base_id(self, guide_id: int) -> int | None:
        """The base token a guide token maps to (exactly or by projection), or None if dropped."""
        bid = self._lookup[guide_id]
        return None if bid < 0 else bid

    def mass_exact(self, guide_probs: torch.Tensor) -> float:
        """Share of the guide's probability mass on tokens with an exact base counterpart."""
        return float(guide_probs.to(self.device)[self.exact].sum())

    def describe(self) -> dict:
        return {"identity": self.identity, "exact_share": round(self.exact_share, 6)}


def _end_target(gid: int, guide_tok, base_tok) -> int:
    """Where a control token of the guide goes: an end token to itself if it also ends the base,
    else to the base's end-of-sequence; any other control token nowhere (-1)."""
    if gid not in guide_tok.eos_ids or base_tok.eos_id is None:
        return -1
    return gid if gid in base_tok.eos_ids else base_tok.eos_id


def _project(surfaces: dict[int, bytes], base_tok, lookup) -> dict[int, int]:
    """guide id -> first base token of the re-encoded surface (or of its first byte)."""
    out: dict[int, int] = {}
    for gid, s in surfaces.items():
        try:
            ids = base_tok.encode(s.decode("utf-8"))
        except UnicodeDecodeError:  # a partial UTF-8 sequence: fall back to its first byte
            ids = [b for b in [lookup(s[:1])] if b is not None]
        if ids:
            out[gid] = ids[0]
    return out
