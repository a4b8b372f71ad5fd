"""The vocabulary bridge on scripted tokenizers (exact) and on the two real tokenizers."""

import pytest
import torch

from blendin.vocab import VocabBridge, surface

from scripted import base_tokenizer, guide_tokenizer


def fake_bridge():
    g, b = guide_tokenizer(), base_tokenizer()
    return g, b, VocabBridge.build(g, b, len(g.pieces()), len(b.pieces()))


def test_surface_forms():
    assert surface("▁The", False) == (b" The", False)
    assert surface("<0xE2>", False) == (b"\xe2", True)
    assert surface("ĠThe", True) == (b" The", False)
    assert surface("Ċ", True) == (b"\n", False)
    assert surface("âĢĻ", True) == ("’".encode(), False)


def test_fake_bridge_exact_projected_eos_and_dropped():
    g, b, bridge = fake_bridge()
    gid, bid = g.pieces().index, b.pieces().index
    assert bridge.base_id(gid("Ġyes")) == bid("▁yes") and bool(bridge.exact[gid("Ġyes")])
    assert bridge.base_id(gid("Ġcats")) == bid("▁cat") and not bool(bridge.exact[gid("Ġcats")])
    assert bridge.base_id(gid("<|end|>")) == bid("<eos>")
    assert bridge.base_id(gid("<|sys|>")) is None
    assert bridge.base_id(gid("7")) == bid("7")


def test_to_base_sums_merged_mass_renormalises_and_is_pure():
    g, b, bridge = fake_bridge()
    gid, bid = g.pieces().index, b.pieces().index
    probs = torch.zeros(len(g.pieces()), dtype=torch.float64)
    probs[gid("Ġcats")], probs[gid("c")], probs[gid("<|sys|>")], probs[gid("Ġno")] = 0.2, 0.1, 0.2, 0.5
    before = probs.clone()
    out = bridge.to_base(probs)
    assert torch.equal(probs, before)
    assert out.shape == (len(b.pieces()),)
    assert out[bid("▁cat")] == pytest.approx(0.25) and out[bid("▁no")] == pytest.approx(0.625)
    assert float(out.sum()) == pytest.approx(1.0)
    assert bridge.mass_exact(probs) == pytest.approx(0.6)


def test_identity_for_the_same_tokenizer():
    b = base_tokenizer()
    bridge = VocabBridge.build(b, b, len(b.pieces()), len(b.pieces()))
    probs = torch.rand(len(b.pieces()))
    assert bridge.identity
    bos = b.pieces().index("<bos>")  # a control token: dropped, the rest renormalised
    expected = probs.clone()
    expected[bos] = 0
    assert torch.allclose(bridge.to_base(probs), expected / expected.sum())
    assert bridge.base_id(bos) is None and bridge.base_id(b.eos_id) == b.eos_id


@pytest.fixture(scope="module")
def real_bridge():
    from transformers import AutoTokenizer

    from blendin.backends.hf import HFTokenizer
    from blendin.models import prepare

    base = HFTokenizer(AutoTokenizer.from_pretrained(prepare("gemma-3-270m")))
    guide = HFTokenizer(AutoTokenizer.from_pretrained(prepare("smollm2-135m-instruct")))
    return guide, base, VocabBridge.build(guide, base, len(guide.pieces()), len(base.pieces()))


@pytest.mark.slow
def test_real_bridge_coverage(real_bridge):
    guide, base, bridge = real_bridge
    assert guide.byte_level and not base.byte_level
    assert 0.92 < bridge.exact_share < 0.96  # ~94% of SmolLM2's tokens have a Gemma twin


@pytest.mark.slow
@pytest.mark.parametrize(
    "guide_piece, base_piece",
    [("Ġworld", "▁world"), ("ĠJanet", "▁Janet"), ("7", "7"), ("Ċ", "\n"), ("ĊĊ", "\n\n"), ("Ġ", "▁"), ("âĢĻ", "’"), ("<|im_end|>", "<eos>")],
)
def test_real_bridge_exact_pairs(real_bridge, guide_piece, base_piece):
    guide, base, bridge = real_bridge
    gid = guide.tok.convert_tokens_to_ids(guide_piece)
    assert bridge.base_id(gid) == base.tok.convert_tokens_to_ids(base_piece)
    assert bool(bridge.exact[gid])


@pytest.mark.slow
def test_real_bridge_projection_bytes_and_controls(real_bridge):
    guide, base, bridge = real_bridge
    g = guide.tok.convert_tokens_to_ids
    # SmolLM2 splits ' muffins' as 'Ġmuff|ins'; Gemma has no ' muff' piece of its own if the
    # bridge projects it, the target is the first Gemma token of ' muff'
    muff = g("Ġmuff")
    assert bridge.base_id(muff) == base.encode(" muff")[0]
    # a lone UTF-8 lead byte (0xE2) is not text: it goes to Gemma's byte-fallback token
    assert bridge.base_id(g("â")) == base.tok.convert_tokens_to_ids("<0xE2>")
    assert bridge.base_id(g("<|im_start|>")) is None
