"""Re-encoding a continuation with a dummy-prefix SentencePiece tokenizer (Llama-2, Mistral) adds no space.

A small SentencePiece model is trained here (offline, well under a second) and loaded the ways a
Llama-2 / Mistral checkpoint loads in transformers; a tiny byte-level BPE checks that nothing changes there.
"""

import io
import random

import pytest

from blendin.backends.hf import HFTokenizer

WORDS = "the a cat dog sat on mat and apples hello hello world new line leading space it was good three two one".split()
CONTINUATIONS = ["Hello", "world.", " leading space", "\nnew line", "3 apples", "a", " a", "  two spaces", "x\ny", "Hello, world!\n\nThe end."]


def sentences(n=400, seed=0):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(3, 10))]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", "!", "?", ","]) + (f" {rng.randint(0, 99)}" if rng.random() < 0.3 else ""))
    return out


@pytest.fixture(scope="module")
def spm_dir(tmp_path_factory):
    """A Llama-style SentencePiece model (BPE, byte fallback, dummy prefix) as ``tokenizer.model``."""
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("spm")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences()),
        model_writer=model,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=True,
        split_digits=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model.getvalue())
    return folder


def llama_tokenizer(folder, variant):
    """The three ways a dummy prefix reaches a transformers Llama tokenizer."""
    from tokenizers import normalizers
    from transformers import LlamaTokenizer

    if variant == "legacy":  # Metaspace, prepend_scheme "always" (legacy=True, Mistral-7B style configs)
        return LlamaTokenizer.from_pretrained(str(folder), legacy=True, add_bos_token=True)
    if variant == "non-legacy":  # Metaspace, prepend_scheme "first" (transformers' default)
        return LlamaTokenizer.from_pretrained(str(folder), legacy=False, add_bos_token=True)
    # the hub's Llama-2 tokenizer.json: no pre-tokenizer, a normalizer Prepend("▁") + Replace(" ", "▁")
    tok = LlamaTokenizer.from_pretrained(str(folder), legacy=True, add_bos_token=True)
    tok.backend_tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.backend_tokenizer.pre_tokenizer = None
    return tok


VARIANTS = ["legacy", "non-legacy", "tokenizer.json"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_plain_encoding_adds_a_space(spm_dir, variant):
    """The defect's premise: encoding a continuation plainly prepends '▁', which reads as a space
    (and ``HFTokenizer.decode`` shows it, also under a normalizer that prepends '▁' unconditionally)."""
    tok = llama_tokenizer(spm_dir, variant)
    plain = tok.encode("Hello", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(plain)[0].startswith("▁")
    assert HFTokenizer(tok).decode(plain) == " Hello"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("text", CONTINUATIONS)
def test_continuation_round_trips(spm_dir, variant, text):
    t = HFTokenizer(llama_tokenizer(spm_dir, variant))
    ids = t.encode(text)
    assert t.decode(ids) == text
    pieces = t.tok.convert_ids_to_tokens(ids)
    assert pieces[0].startswith("▁") == text.startswith(" ")  # a real leading space is still '▁'
    assert not set(ids) & t.special_ids


@pytest.mark.parametrize("variant", VARIANTS)
def test_prompt_then_continuation_is_the_text(spm_dir, variant):
    """What Track.follow builds: prompt ids + encode(generated text) reads as prompt + text exactly."""
    t = HFTokenizer(llama_tokenizer(spm_dir, variant))
    prompt_text = "The cat sat on the mat."
    prompt = t.encode_prompt(prompt_text)
    assert prompt[0] == t.tok.bos_token_id  # the prompt keeps the tokenizer's own behaviour
    assert prompt == t.tok.encode(prompt_text)
    for text in CONTINUATIONS:
        ids = prompt + t.encode(text)
        assert t.tok.decode(ids, skip_special_tokens=True) == prompt_text + text
        assert t.decode(ids) == t.decode(prompt) + text
    # the text grows piece by piece, as when the other model writes it
    whole = "Hello world. It was good,\nthree apples"
    for cut in range(1, len(whole) + 1):
        assert t.decode(prompt + t.encode(whole[:cut])) == t.decode(prompt) + whole[:cut]


def test_encode_is_cheap_and_falls_back(spm_dir):
    """One encode call per continuation; the plain encoding when the head's ids are not a prefix."""
    t = HFTokenizer(llama_tokenizer(spm_dir, "legacy"))
    assert t._heads
    calls = []
    inner = t.tok.encode
    t.tok.encode = lambda *a, **k: calls.append(a) or inner(*a, **k)
    t.encode("Hello world")
    assert len(calls) == 1
    t.tok.encode = inner
    t._heads = [(head, [-1] + ids) for head, ids in t._heads]  # never a prefix
    assert t.encode("Hello") == t.tok.encode("Hello", add_special_tokens=False)


@pytest.fixture(scope="module")
def byte_level():
    """A tiny GPT-2 style byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(sentences(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>")


def test_byte_level_is_unchanged(byte_level):
    t = HFTokenizer(byte_level)
    assert t.byte_level and not getattr(t, "_heads", [])
    for text in CONTINUATIONS:
        assert t.encode(text) == byte_level.encode(text, add_special_tokens=False)
        assert t.decode(t.encode(text)) == text


def test_sentencepiece_without_dummy_prefix_is_unchanged(spm_dir):
    """A '▁' vocabulary that adds no prefix (like Gemma's) keeps the plain encoding."""
    from transformers import LlamaTokenizer

    tok = LlamaTokenizer.from_pretrained(str(spm_dir), legacy=False, add_prefix_space=False)
    t = HFTokenizer(tok)
    assert not t.byte_level and not getattr(t, "_heads", [])
    for text in CONTINUATIONS:
        assert t.encode(text) == tok.encode(text, add_special_tokens=False)
        assert t.decode(t.encode(text)) == text
