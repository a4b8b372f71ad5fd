"""Speculative decoding (``speculative``): the base reads drafted tokens in one pass, and the method's
tokens, steps and interventions stay exactly those of the plain path, greedy and sampled, alone and
batched. Scripted models give exact distributions, so steps compare equal to the last bit."""

import pytest
import torch

from blendin.backends.fake import ScriptedModel
from blendin.decoding import Generation, generate, generate_many
from blendin.errors import ConfigError
from blendin.pair import Pair
from blendin.speculative import AutoDraft, GuideDraft, PassCost, PromptLookup, first_paying

from scripted import config, scripted_pair
from test_same_tokenizer import chatml, generated

WORDS = ["Ġyes", "Ġno", "Ġmaybe"]


def base_script(gen):
    """Sure on even words, unsure on odd ones (the guide is consulted there), ends after eight words;
    which word leads depends on the words so far, so a wrong context shows in the answer."""
    words = gen.split()
    n, last = len(words), len(words[-1]) if words else 0
    if n >= 8:
        return {"<|endoftext|>": 0.9, "Ġno": 0.1}
    a, b, c = WORDS[(n + last) % 3], WORDS[(n + last + 1) % 3], WORDS[(n + last + 2) % 3]
    if n % 2 == 0:
        return {a: 0.6, b: 0.3, c: 0.1}
    return {a: 0.35, b: 0.33, c: 0.32}


def guide_script(gen):
    """Agrees with the base on some words and not on others, so drafts are cut at different places."""
    words = gen.split()
    n = len(words)
    if n >= 7:
        return {"<|im_end|>": 0.8, "Ġyes": 0.2}
    top = WORDS[(n * n + len("".join(words))) % 3]
    return {top: 0.7, **{w: 0.15 for w in WORDS if w != top}}


def pair_of(base=base_script, guide=guide_script) -> Pair:
    tok = chatml()
    return Pair(base=ScriptedModel(tok, lambda t: base(generated(t)), name="base"),
                guide=ScriptedModel(tok, lambda t: guide(generated(t)), name="guide"))


def run(pair, method, speculate, **kw):
    g = Generation(pair, "q?", config(method=method, speculate=speculate, **kw))
    for _ in g:
        pass
    return g, g.result()


CASES = [(m, s) for m in ("base", "switch", "blendin", "nudging") for s in ("guide", "lookup", "auto") if not (m == "base" and s == "guide")]


@pytest.mark.parametrize("method, speculate", CASES)
def test_greedy_tokens_and_steps_are_the_plain_paths(method, speculate):
    _, plain = run(pair_of(), method, "off")
    _, spec = run(pair_of(), method, speculate)
    assert plain.tokens > 5 and (method == "base" or plain.interventions > 0)
    assert spec.text == plain.text and spec.steps == plain.steps and spec.interventions == plain.interventions


@pytest.mark.parametrize("method", ["switch", "blendin", "nudging"])
def test_sampled_draws_are_the_plain_paths_seed_for_seed(method):
    """The target is the method's own distribution at every position, so sampling gives the plain
    path's tokens draw for draw (which is more than following the same distribution)."""
    for seed in range(12):
        kw = dict(temperature=1.0, seed=seed)
        _, plain = run(pair_of(), method, "off", **kw)
        _, spec = run(pair_of(), method, "guide", **kw)
        assert spec.steps == plain.steps, seed


def test_batched_rows_of_mixed_methods_accept_different_lengths():
    prompts = [{"prompt": "q" + "abcde"[i] + "?", "config": config(method=m, speculate="auto")} for i, m in enumerate(["blendin", "switch", "nudging", "base", "blendin"])]
    plain = [{**p, "config": p["config"].with_(speculate="off")} for p in prompts]
    together = dict(generate_many(pair_of(), prompts, config(), batch_size=3))
    alone = dict(generate_many(pair_of(), plain, config(), batch_size=1))
    assert {i: r.steps for i, r in together.items()} == {i: r.steps for i, r in alone.items()}


def test_an_agreeing_guide_saves_base_passes_and_blended_steps_cost_no_guide_pass():
    """The guide drafts what the method then picks: one base pass serves several tokens."""
    def agreeing(gen):  # the base's own favourite at every word, sure of it
        top = max(base_script(gen).items(), key=lambda kv: kv[1])[0]
        return {"<|im_end|>" if top == "<|endoftext|>" else top: 0.9, "Ġmaybe" if top != "Ġmaybe" else "Ġno": 0.1}

    plain_gen, plain = run(pair_of(guide=agreeing), "blendin", "off")
    spec_gen, spec = run(pair_of(guide=agreeing), "blendin", "guide")
    assert spec.steps == plain.steps and plain.tokens == 9
    assert plain_gen.base.session.forward_calls == 9
    assert spec_gen.base.session.forward_calls <= 3
    assert spec_gen.drafter.accepted == spec_gen.drafter.drafted > 0
    # every blended step's guide distribution was one the draft had already computed
    assert spec_gen.guide.session.forward_calls <= spec.tokens


def test_prompt_lookup_drafts_a_repeated_phrase():
    def repeating(gen):  # "yes no maybe" over and over: sure of each word, then ends
        n = len(gen.split())
        return {"<|endoftext|>": 1.0} if n >= 12 else {WORDS[n % 3]: 0.9, WORDS[(n + 1) % 3]: 0.1}

    plain_gen, plain = run(pair_of(base=repeating), "base", "off")
    spec_gen, spec = run(pair_of(base=repeating), "base", "lookup")
    assert spec.steps == plain.steps and plain.tokens == 13
    assert isinstance(spec_gen.drafter, PromptLookup) and spec_gen.drafter.accepted >= 6
    assert spec_gen.base.session.forward_calls < plain_gen.base.session.forward_calls


def test_across_tokenizers_auto_takes_lookup_and_guide_is_refused():
    class Table(dict):  # a drafted context the table leaves out ends the answer
        def __init__(self, rows, end):
            super().__init__(rows)
            self.end = end

        def __missing__(self, key):
            return {self.end: 1.0}

    base = Table({"": {"▁yes": 0.3, "▁no": 0.7}, " no": {"▁no": 0.35, "▁yes": 0.35, "<eos>": 0.3}}, "<eos>")
    guide = Table({"": {"Ġyes": 1.0}, " no": {"Ġyes": 0.9, "<|end|>": 0.1}}, "<|end|>")
    plain = generate(scripted_pair(base, guide), "Q", config(method="blendin"))
    g = Generation(scripted_pair(base, guide), "Q", config(method="blendin", speculate="auto"))
    assert isinstance(g.drafter, AutoDraft) and g.drafter.guide is None  # lookup alone
    for _ in g:
        pass
    assert g.result().steps == plain.steps and plain.interventions > 0
    with pytest.raises(ConfigError, match="another tokenizer.*--speculate lookup"):
        Generation(scripted_pair(base, guide), "Q", config(method="blendin", speculate="guide"))


def test_choices_and_what_they_refuse():
    assert isinstance(Generation(pair_of(), "q?", config(method="switch", speculate="guide")).drafter, GuideDraft)
    assert isinstance(Generation(pair_of(), "q?", config(method="base", speculate="lookup")).drafter, PromptLookup)
    assert Generation(pair_of(), "q?", config(method="switch", speculate="auto")).drafter.guide is not None
    assert Generation(pair_of(), "q?", config(method="base", speculate="auto")).drafter.guide is None
    assert Generation(pair_of(), "q?", config(method="guide", speculate="auto")).drafter is None  # the base never runs
    assert Generation(pair_of(), "q?", config(method="blendin")).drafter is None
    assert Generation(pair_of(), "q?", config(method="base", speculate="guide")).drafter is None  # no guide: no draft, no fault
    served = pair_of()
    served.guide.drafts = False  # as a guide on a server
    with pytest.raises(ConfigError, match="'guide' cannot read drafted tokens"):
        Generation(served, "q?", config(method="blendin", speculate="guide"))
    assert Generation(served, "q?", config(method="blendin", speculate="auto")).drafter.guide is None
    with pytest.raises(ConfigError, match="unknown speculate 'gide'.*did you mean 'guide'"):
        config(speculate="gide")


def test_the_session_moves_onto_drafted_tokens_without_a_pass():
    tok = chatml()
    model = ScriptedModel(tok, lambda t: base_script(generated(t)), name="base")
    s = model.session()
    prompt = tok.encode("q?\n")
    yes, no = tok.encode(" yes")[0], tok.encode(" no")[0]
    s.sync(prompt)
    s.draft([yes, no])
    s.logprobs()
    assert (s.forward_calls, s.ahead) == (1, [yes, no])
    s.append(yes)  # onto the draft: its distribution was kept
    assert not s.stale and s.forward_calls == 1
    assert torch.equal(s.logprobs(), torch.log(model.probs_for(tok.decode(prompt + [yes]))))
    s.sync(prompt + [yes, no])  # a sync onto the draft moves along it too
    assert not s.stale and s.ahead == [] and s.forward_calls == 1
    s.sync(prompt + [yes, yes])  # off the draft: the cache is kept up to where it agrees
    assert s.stale and s.pending() == (len(prompt) + 1, [yes])
    s.draft([no])
    s.append(no)  # a move of the context cancels a draft not yet read
    assert s.drafted == [] and s.pending()[1] == [yes, no]


def test_the_draft_length_grows_while_drafts_are_taken_and_shrinks_when_cut():
    d = PromptLookup(None)
    d._last = 4
    d._adapt(4)  # all 4 drafted tokens taken
    assert (d.k, d._rest) == (6, 0)
    d._last = 6
    d._adapt(1)  # one taken, then the method chose otherwise
    assert (d.k, d._rest) == (5, 0)
    d._last = 5
    d._adapt(0)  # nothing taken: rest a pass, then 3, then 7
    assert (d.k, d._rest) == (4, 1)
    d._last = 4
    d._adapt(0)
    assert d._rest == 3


def test_auto_drafts_only_for_a_row_alone_on_its_base():
    from types import SimpleNamespace

    from blendin.speculative import _shared

    me, waiting, begun = (SimpleNamespace(started=b) for b in (True, False, True))
    me.runner = SimpleNamespace(open=[me, waiting])  # a row made but not begun holds a session, no pass
    assert not _shared(me) and not _shared(SimpleNamespace())
    me.runner.open.append(begun)
    assert _shared(me)
    assert Generation(pair_of(), "q?", config(method="blendin", speculate="auto")).drafter.alone_only
    assert not Generation(pair_of(), "q?", config(method="blendin", speculate="guide")).drafter.alone_only


def test_pass_cost_is_a_line_through_short_passes():
    cost = PassCost()
    assert not cost.measured
    cost.add(1, 0.5)
    assert cost.seconds(8) == pytest.approx(0.5)  # one length seen: tokens read cost nothing more
    cost.add(9, 1.5)
    cost.add(200, 60.0)  # a prompt read: left out
    assert cost.seconds(5) == pytest.approx(1.0) and cost.seconds(1) == pytest.approx(0.5)


def test_auto_weighs_the_drafters_by_what_they_cost_here():
    gpu = lambda n: 0.02  # noqa: E731  a pass costs the same for a few more tokens
    # a guide pass as dear as the base's (small models on a GPU, bound by launching kernels): never the guide
    assert first_paying({"guide": (0.9, 8, 0.02), "lookup": (0.6, 2, 0.0)}, gpu, 0.02) == "lookup"
    assert first_paying({"guide": (0.9, 8, 0.02), "lookup": (0.6, 0, 0.0)}, gpu, 0.02) is None
    # a guide an eighth of the base (an 8B base with a 1B guide): the guide
    assert first_paying({"guide": (0.8, 8, 0.0025), "lookup": (0.6, 2, 0.0)}, gpu, 0.02) == "guide"
    # a CPU, where each token read costs: a draft only while it is taken
    cpu = lambda n: 0.37 + 0.13 * n  # noqa: E731
    assert first_paying({"guide": (0.95, 8, 0.05), "lookup": (0.2, 3, 0.0)}, cpu, cpu(1)) == "guide"
    assert first_paying({"guide": (0.95, 8, 0.05), "lookup": (0.99, 8, 0.0)}, cpu, cpu(1)) == "guide"  # the guide first
    assert first_paying({"guide": (0.3, 8, 0.05), "lookup": (0.2, 3, 0.0)}, cpu, cpu(1)) is None


def _timed(g, base_seconds: float, guide_seconds: float):
    """Give a row's scripted models the runners' measured pass costs (one row, tokens cost nothing)."""
    from types import SimpleNamespace

    for track, seconds in ((g.base, base_seconds), (g.guide, guide_seconds)):
        cost = PassCost()
        cost.add(1, seconds)
        track.session.runner = SimpleNamespace(cost=cost, draft_record={}, open={track.session})


@pytest.mark.parametrize("guide_seconds, drafter", [(0.05, "guide"), (1.0, "lookup")])
def test_auto_drafts_with_the_guide_only_where_its_passes_are_cheap(guide_seconds, drafter):
    def agreeing(gen):  # the base's own favourite at every word (so its drafts are taken)
        top = max(base_script(gen).items(), key=lambda kv: kv[1])[0]
        return {"<|im_end|>" if top == "<|endoftext|>" else top: 0.9, "Ġmaybe" if top != "Ġmaybe" else "Ġno": 0.1}

    _, plain = run(pair_of(guide=agreeing), "blendin", "off")
    g = Generation(pair_of(guide=agreeing), "q?", config(method="blendin", speculate="auto"))
    _timed(g, 1.0, guide_seconds)
    for _ in g:
        pass
    assert g.result().steps == plain.steps
    assert g.drafter.drafted_by["guide"] > 0 if drafter == "guide" else g.drafter.drafted_by["guide"] == 0
    if drafter == "guide":
        assert g.base.session.forward_calls <= 4 and g.drafter.record["guide"][0] > 0
    runner = g.base.session.runner
    assert runner.draft_record == {k: v for k, v in g.drafter.record.items() if v != [0, 0]}  # pooled for the next rows


def test_auto_tries_a_drafter_before_it_judges_it():
    g = Generation(pair_of(), "q?", config(method="blendin", speculate="auto"))
    _timed(g, 1.0, 0.3)
    d = g.drafter
    assert d.acceptance("guide") == pytest.approx(0.99)  # nothing known yet: optimistic, so it is tried
    g.base.session.runner.draft_record["guide"] = [30, 70]  # 100 tokens' worth of evidence, 30% taken
    assert d.acceptance("guide") == pytest.approx(34 / 105 + 0.5 / 101 ** 0.5)
    d.record["guide"] = [0, 4]  # and this row's own drafts were all refused
    assert d.acceptance("guide") < 0.25


def test_the_guide_drafts_only_while_it_is_sure(monkeypatch):
    def hesitant(gen):  # the base's favourite at every word, sure of it except at the fourth word
        top = max(base_script(gen).items(), key=lambda kv: kv[1])[0]
        top = "<|im_end|>" if top == "<|endoftext|>" else top
        sure = 0.3 if len(gen.split()) == 3 else 0.9
        return {top: sure, **{w: (1 - sure) / 2 for w in WORDS if w != top}}

    drafts = []
    set_draft = GuideDraft._set
    monkeypatch.setattr(GuideDraft, "_set", lambda self, row, tokens: (drafts.append(len(tokens)), set_draft(self, row, tokens)))
    _, plain = run(pair_of(guide=hesitant), "blendin", "off")
    _, spec = run(pair_of(guide=hesitant), "blendin", "guide")
    sure_only, drafts = drafts, []
    monkeypatch.setattr(GuideDraft, "CONFIDENCE", 0.0)
    _, spec_every = run(pair_of(guide=hesitant), "blendin", "guide")
    assert spec.steps == spec_every.steps == plain.steps
    assert (sure_only[0], drafts[0]) == (3, 4)  # the first draft of 4 ends before the unsure fourth word


def test_base_rows_beside_guided_ones_decode_under_speculate_guide():
    """A row whose method consults no guide drafts nothing under --speculate guide, and fails nothing
    (issue 33: base rows aborted an eval batch, and a server answered their requests 400)."""
    pair = pair_of()
    cfg = config(speculate="guide")
    prompts = [{"prompt": "q?", "config": cfg.with_(method=m)} for m in ("base", "blendin", "base")]
    results = dict(generate_many(pair, prompts, cfg, batch_size=3))
    plain = generate(pair_of(), "q?", config(method="base"))
    assert all(r.error is None for r in results.values())
    assert results[0].text == results[2].text == plain.text and results[0].speculation is None
    assert results[1].speculation["drafted"] > 0
