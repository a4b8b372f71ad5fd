"""The in-process llama.cpp backend (``backends.llama_cpp``) on the embedded SmolLM2-135M-Instruct GGUF:
the GGUF's token ids are the tokenizer's, batched rows read what each reads alone and a rewind and a
draft give the distributions of a fresh read (to the last bit: a cache stream per sequence), and the
loop blends with it as with any backend."""

import json

import pytest
import torch

from blendin import BlendConfig, PromptFormat
from blendin.backends.llama_cpp import LlamaCppModel
from blendin.decoding import generate, generate_many
from blendin.errors import ModelLoadError
from blendin.pair import Pair
from blendin.prompts import prompt_ids

pytestmark = pytest.mark.slow

GUIDE = "smollm2-135m-instruct"
QUESTIONS = ["What is the capital of France?", "Name a colour.", "Tom has 3 apples and buys 4 more. How many apples does he have now?"]


@pytest.fixture(scope="module")
def llama_guide():
    from blendin.models import EMBEDDED, cache_dir, load_tokenizer

    tok = load_tokenizer(GUIDE, "for the llama.cpp backend's tests")
    return LlamaCppModel.from_gguf(EMBEDDED[GUIDE].gguf(cache_dir()), tok, name=f"{GUIDE} (llama.cpp)", context=2048, seqs=4, threads=2)


def chat_ids(model, question):
    return prompt_ids(model.tokenizer, PromptFormat(), question, chat=True)


def test_the_ggufs_token_ids_are_the_tokenizers(llama_guide):
    tok = llama_guide.tokenizer
    for question in QUESTIONS + ["  spaces,\ttabs\nand ünïcödé — 1,234.5"]:
        chat = tok.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": question}])
        assert llama_guide.tokenize(chat) == tok.tok.encode(chat, add_special_tokens=False), question  # special tokens included
        assert llama_guide.tokenize(question, special=False) == tok.encode(question)
    assert llama_guide.vocab_size == len(tok.tok)


def _alone(model, ids):
    s = model.session()
    s.sync(ids)
    out = s.logprobs().clone()
    s.close()
    return out


def test_batched_rows_read_what_each_reads_alone(llama_guide):
    prompts = [chat_ids(llama_guide, q) for q in QUESTIONS]
    alone = [_alone(llama_guide, ids) for ids in prompts]
    sessions = [llama_guide.session() for _ in prompts]
    for s, ids in zip(sessions, prompts):
        s.sync(ids)
    llama_guide.forward_batch(sessions)
    for s, lp in zip(sessions, alone):
        assert torch.equal(s.logprobs(), lp)  # a cache stream per sequence: to the last bit
        s.close()
    assert len(llama_guide.open) == 0


def test_a_rewind_and_a_draft_give_a_fresh_reads_distributions(llama_guide):
    ids = chat_ids(llama_guide, QUESTIONS[0])
    answer = llama_guide.tokenizer.encode("The capital of France is Paris.")
    s = llama_guide.session()
    s.sync(ids + answer)
    s.logprobs()
    s.sync(ids + answer[:2])  # rewind: the cache is cut back to the common prefix
    assert torch.equal(s.logprobs(), _alone(llama_guide, ids + answer[:2]))
    s.draft(answer[2:5])  # one pass reads three drafted tokens and keeps the distribution after each
    after_draft = s.ahead_logprobs()
    assert torch.equal(after_draft, _alone(llama_guide, ids + answer[:5]))
    s.append(answer[2])  # onto a drafted token: no pass
    calls = s.forward_calls
    assert torch.equal(s.logprobs(), _alone(llama_guide, ids + answer[:3]))
    assert s.forward_calls == calls
    s.close()


def test_blendin_guided_by_a_llama_cpp_guide(embedded_pair, llama_guide):
    pair = Pair(base=embedded_pair.base, guide=llama_guide)
    config = BlendConfig(method="blendin", max_new_tokens=24)
    alone = [generate(pair, q, config) for q in QUESTIONS]
    together = dict(generate_many(pair, QUESTIONS, config, batch_size=3))
    assert all(r.error is None for r in alone) and sum(r.interventions for r in alone) > 0
    for i, r in enumerate(alone):  # batched through one llama_decode per round: the same greedy answers
        assert together[i].text == r.text and [s.token_id for s in together[i].steps] == [s.token_id for s in r.steps]
    assert len(llama_guide.open) == 0  # every row's sequence freed


def test_a_file_that_is_not_gguf_is_refused_in_one_line(tmp_path, llama_guide):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ModelLoadError, match="could not load") as refused:
        LlamaCppModel.from_gguf(bad, llama_guide.tokenizer)
    assert "\n" not in str(refused.value)


def test_the_cache_rows_are_freed_and_reused(llama_guide):
    ids = chat_ids(llama_guide, QUESTIONS[1])
    first = _alone(llama_guide, ids)
    for _ in range(20):  # more sessions than a context has sequences, one after another
        assert torch.equal(_alone(llama_guide, ids).argmax(), first.argmax())


def test_more_rows_than_a_context_holds_open_another(llama_guide):
    prompts = [chat_ids(llama_guide, q) for q in QUESTIONS * 2]  # six rows, at most four sequences to a context
    alone = [_alone(llama_guide, ids) for ids in prompts]
    sessions = [llama_guide.session() for _ in prompts]
    assert len({id(s.home) for s in sessions}) >= 3
    # each context as large as the ones before it together, up to the cap: memory follows the rows
    assert [len(c.seq_ids) for c in llama_guide._contexts] == [1, 1, 2, 4][:len(llama_guide._contexts)]
    for s, ids in zip(sessions, prompts):
        s.sync(ids)
    llama_guide.forward_batch(sessions)
    assert all(torch.equal(s.logprobs(), lp) for s, lp in zip(sessions, alone))
    for s in sessions:
        s.close()


EMBEDDED_INSTALLED = ["gemma-3-270m", "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"]  # the test set-up's


@pytest.mark.parametrize("spec", EMBEDDED_INSTALLED)
def test_every_embedded_model_tokenizes_alike_on_both_backends(spec):
    """A prompt's ids, special tokens included, are the same through the transformers tokenizer and
    llama.cpp's own; the llama.cpp model's tokenizer (and so its vocabulary bridge) is the one the
    transformers backend uses, end tokens included."""
    from blendin.models import load_model

    llama = load_model(spec, backend="llama.cpp", threads=2)
    tok = llama.tokenizer
    chat = tok.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTIONS[2]}])
    text = chat if chat is not None else "Question: " + QUESTIONS[2] + "\nAnswer:\n"
    assert llama.tokenize(text) == tok.tok.encode(text, add_special_tokens=False)
    assert llama.tokenize(" ünïcödé — 1,234.5\tend", special=False) == tok.encode(" ünïcödé — 1,234.5\tend")
    assert set(llama.end_ids()) <= tok.eos_ids and llama.vocab_size >= len(tok.tok)


def test_the_ggufs_own_tokenizer_is_the_converted_ones(tmp_path, monkeypatch):
    """Without a converted folder, the tokenizer is read from the GGUF (no weights converted) and kept:
    the same pieces, so the same vocabulary bridge."""
    import blendin.models as models

    converted = models.load_tokenizer(GUIDE, "the test's reference")
    gguf = models.EMBEDDED[GUIDE].gguf(models.cache_dir())
    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(models, "_complete", lambda folder: False)  # as if never converted
    read = models._gguf_tokenizer(GUIDE, gguf)
    assert read.pieces() == converted.pieces() and read.eos_ids == converted.eos_ids
    assert (tmp_path / "tokenizers").is_dir() and not (tmp_path / "models").exists()  # kept; nothing converted


def test_generate_on_the_llama_cpp_backend_end_to_end(capsys):
    from blendin.cli import main

    code = main(["generate", "--backend", "llama.cpp", "--threads", "2", "--max-new-tokens", "24", "--json",
                 "What is the capital of France?"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    assert "Paris" in result["text"] and result["tokens_per_second"] > 0


def test_a_prompt_longer_than_a_batch_is_read_in_parts(llama_guide):
    from blendin.models import EMBEDDED, cache_dir

    small = LlamaCppModel.from_gguf(EMBEDDED[GUIDE].gguf(cache_dir()), llama_guide.tokenizer, context=1024, seqs=2, threads=2, batch=64)
    ids = chat_ids(llama_guide, " ".join(QUESTIONS * 12))
    assert 64 * 3 < len(ids) < 1024
    s = small.session()
    s.sync(ids)
    got = s.logprobs().clone()
    s.close()
    small.close()
    expected = _alone(llama_guide, ids)
    # read in parts of 64 the numbers move a little (llama.cpp's kernels depend on the batch's size):
    # measured 0.011 here; the answer's token is the same
    assert int(got.argmax()) == int(expected.argmax()) and float((got.exp() - expected.exp()).abs().max()) < 0.05


def test_a_context_too_short_is_refused_in_one_line_before_decoding(capsys):
    from blendin.cli import main

    code = main(["generate", "--backend", "llama.cpp", "--threads", "2", "--context", "32", "--max-new-tokens", "64",
                 "What is the capital of France?"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "past the base model's context of 32 tokens" in err and "--context" in err
    assert len(err.splitlines()) == 1


def test_prepare_for_llama_cpp_converts_nothing(tmp_path, monkeypatch, capsys):
    """`blendin prepare --backend llama.cpp` makes the file and its tokenizer ready; the weights stay GGUF."""
    import shutil

    from blendin.cli import main
    from blendin.models import EMBEDDED, cache_dir

    gguf = tmp_path / "smollm2.gguf"
    shutil.copy(EMBEDDED[GUIDE].gguf(cache_dir()), gguf)
    monkeypatch.setenv("BLENDIN_CACHE", str(tmp_path / "cache"))
    assert main(["prepare", "--backend", "llama.cpp", "--base", str(gguf), "--guide", str(gguf)]) == 0
    assert f"ready at {gguf}" in capsys.readouterr().out
    assert (tmp_path / "cache" / "tokenizers").is_dir() and not (tmp_path / "cache" / "models").exists()
