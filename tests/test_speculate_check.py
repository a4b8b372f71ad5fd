"""A pair that cannot draft as ``--speculate`` asks is refused where it is set up, with the line that
says what to change: ``blendin serve`` refuses to start (``server.build``), and ``check_pair`` refuses
before any weights load (two tokenizers compared alone; a guide or base on a server from the config),
rather than every request or row failing later (``speculative.drafter_for``, whose words these are)."""

import threading

import pytest
from scripted import config, scripted_pair
from test_speculative import pair_of

import blendin.pair
from blendin.backends.fake import FakeTokenizer
from blendin.config import RemoteSpec
from blendin.decoding import Generation
from blendin.errors import ConfigError
from blendin.pair import check_pair, speculation_problem
from blendin.server import build
from blendin.server.settings import ServeSettings

SERVER = RemoteSpec(url="http://127.0.0.1:9/v1", model="m")
ACROSS = "the guide has another tokenizer than the base; use --speculate lookup \\(any pair\\) or auto"


def served_guide():
    pair = pair_of()
    pair.guide.drafts = False  # as a guide on a server
    return pair


def served_base():
    pair = pair_of()
    pair.base.drafts = False  # as a base on a server
    return pair


# (pair, method, speculate, what the refusal says)
REFUSED = [
    (lambda: scripted_pair({}, {}), "blendin", "guide", "another tokenizer than the base"),
    (served_guide, "switch", "guide", "the guide 'guide' cannot read drafted tokens \\(a model on a server\\)"),
    (served_base, "blendin", "lookup", "needs a base that scores drafted tokens in one pass.*use --speculate off"),
]


def engines() -> int:
    return sum(t.name == "blendin-engine" for t in threading.enumerate())


@pytest.mark.parametrize("make, method, speculate, says", REFUSED)
def test_the_server_refuses_to_start_on_a_pair_that_cannot_draft_so(make, method, speculate, says):
    before = engines()
    with pytest.raises(ConfigError, match=says) as refused:
        build(make(), config(method=method, speculate=speculate), ServeSettings())
    assert "\n" not in str(refused.value)
    assert engines() == before  # refused before the engine's thread started


@pytest.mark.parametrize("make, method, speculate, says", REFUSED)
def test_the_check_says_what_a_row_would_be_refused_with(make, method, speculate, says):
    cfg = config(method=method, speculate=speculate)
    with pytest.raises(ConfigError) as row:
        Generation(make(), "q?", cfg)
    assert speculation_problem(cfg, make()) == str(row.value)


@pytest.mark.parametrize("make, method, speculate", [
    (lambda: scripted_pair({}, {}), "blendin", "lookup"), (lambda: scripted_pair({}, {}), "blendin", "auto"),
    (pair_of, "blendin", "guide"), (pair_of, "base", "lookup"), (pair_of, "base", "guide"), (served_guide, "blendin", "auto"),
    (served_base, "blendin", "auto"), (served_base, "guide", "lookup"), (served_base, "blendin", "off")])
def test_a_pair_that_can_draft_so_starts(make, method, speculate):
    cfg = config(method=method, speculate=speculate)
    assert speculation_problem(cfg, make()) is None
    app = build(make(), cfg, ServeSettings())
    app.state.engine.stop()


# -- before any weights load ------------------------------------------------------------------

def pieces_of(tokenizers: dict, asked: list):
    def pieces(spec):
        asked.append(spec)
        return tuple(tokenizers[spec].pieces())
    return pieces


def two(**kw):
    """The embedded pair's names (found, not loaded: their tokenizers are the fixture's)."""
    return config(**{"base": "gemma-3-270m", "guide": "smollm2-135m-instruct", **kw})


@pytest.fixture
def tokenizers(monkeypatch):
    """check_pair's tokenizer loader, answering fake tokenizers: one for the base, another for the guide."""
    asked = []
    toks = {"gemma-3-270m": FakeTokenizer(["<eos>", "▁yes"]), "smollm2-135m-instruct": FakeTokenizer(["<eos>", "Ġyes"], byte_level=True)}
    monkeypatch.setattr(blendin.pair, "_vocabulary", pieces_of(toks, asked))
    return asked, toks


def test_check_pair_refuses_guide_drafts_across_tokenizers_from_the_tokenizers_alone(tokenizers):
    asked, toks = tokenizers
    with pytest.raises(ConfigError, match=ACROSS):
        check_pair(two(speculate="guide"))
    assert sorted(asked) == ["gemma-3-270m", "smollm2-135m-instruct"]
    toks["smollm2-135m-instruct"] = toks["gemma-3-270m"]  # one tokenizer: the guide can draft
    check_pair(two(speculate="guide"))
    check_pair(two(speculate="guide"), methods=("base", "blendin"))


def test_check_pair_loads_no_tokenizer_unless_the_guide_is_to_draft(tokenizers):
    check_pair(two(speculate="auto"))
    check_pair(two(speculate="lookup"))
    check_pair(two(method="guide", speculate="guide"))  # the base never runs: nothing drafts
    check_pair(two(speculate="guide"), methods=("guide",))
    assert tokenizers[0] == []


def test_check_pair_refuses_guide_drafts_with_no_guide_consulted(tokenizers):
    with pytest.raises(ConfigError, match="the method consults no guide"):
        check_pair(two(method="base", speculate="guide"))
    assert tokenizers[0] == []


def test_check_pair_refuses_a_guide_on_a_server_without_loading_a_tokenizer(tokenizers):
    with pytest.raises(ConfigError, match="'smollm2-135m-instruct' cannot read drafted tokens \\(a model on a server\\)"):
        check_pair(two(speculate="guide", guide_remote=SERVER))
    assert tokenizers[0] == []


def test_check_pair_refuses_drafts_for_a_base_on_a_server(tokenizers):
    with pytest.raises(ConfigError, match="'gemma-3-270m' does not: use --speculate off"):
        check_pair(two(speculate="lookup", base_remote=SERVER))
    check_pair(two(speculate="auto", base_remote=SERVER))  # auto drafts where it can: not at all here
    check_pair(two(method="guide", speculate="lookup", base_remote=SERVER))
    assert tokenizers[0] == []


def test_check_pair_names_a_missing_model_before_comparing_tokenizers(tokenizers):
    from blendin.errors import ModelLoadError

    with pytest.raises(ModelLoadError):
        check_pair(two(speculate="guide", guide="/no/such/folder"))
    assert tokenizers[0] == []


@pytest.mark.slow
def test_the_embedded_pairs_tokenizers_differ_and_guide_drafts_are_refused():
    with pytest.raises(ConfigError, match=ACROSS):
        check_pair(two(speculate="guide"))


@pytest.mark.parametrize("command", [["generate", "hi"], ["serve"], ["eval", "--task", "gsm8k", "--limit", "1", "--out", "OUT"]])
def test_the_commands_refuse_guide_drafts_across_tokenizers_before_any_weights_load(command, tokenizers, monkeypatch, capsys, tmp_path):
    import blendin.models
    from blendin.cli import main

    def load_model(*args, **kw):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(blendin.models, "load_model", load_model)
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    assert main([*argv, "--speculate", "guide"]) == 2
    err = capsys.readouterr().err
    assert "another tokenizer than the base; use --speculate lookup (any pair) or auto" in err and len(err.strip().splitlines()) == 1
