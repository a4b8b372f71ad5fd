"""Several guides on real models: Gemma-3-270m guided by SmolLM2-135M-Instruct and
Qwen2.5-Coder-0.5B-Instruct together (three vocabularies), locally and with one guide behind a server."""

import json
import subprocess
import sys

import pytest

from blendin import BlendConfig
from blendin.blend import guide_weights
from blendin.decoding import generate, generate_many
from blendin.pair import Pair
from blendin.testing import CompletionServer

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-coder-0.5b-instruct"
QUESTIONS = ["A shop sells pens at 3 dollars each. How much do 7 pens cost?", "Name a fruit that is yellow.",
             "Why do we see lightning before we hear thunder?"]


@pytest.fixture(scope="module")
def three(embedded_pair):
    from blendin.models import load_model

    return Pair(base=embedded_pair.base, guide=embedded_pair.guide, more_guides=[load_model(QWEN)])


def config(**kw):
    kw.setdefault("max_new_tokens", 24)
    return BlendConfig(guide=["smollm2-135m-instruct", QWEN], **kw)


def test_three_vocabularies_each_guide_through_its_own_bridge(three):
    assert len(three.bridges) == 2 and three.more_guides[0].vocab_size != three.guide.vocab_size != three.base.vocab_size
    r = generate(three, QUESTIONS[0], config())
    guided = [s for s in r.steps if s.source == "blend"]
    assert guided, "the base was sure of every token: no step to check"
    for s in guided:
        assert [g["guide"] for g in s.guides] == [0, 1]
        assert s.alpha == pytest.approx(sum(g["weight"] for g in s.guides))
        # the weights are the rule's own, from the step's fields
        assert [g["weight"] for g in s.guides] == guide_weights(s.base_top_prob, [g["m_g"] for g in s.guides],
                                                                 [g["agreement"] for g in s.guides])
    for k, g in enumerate(r.guides):
        assert g["consulted"] == g["interventions"] == len(guided)
        assert g["passes"] >= g["consulted"]
    assert r.guide == f"smollm2-135m-instruct + {QWEN}"


def test_three_models_batched_match_one_at_a_time(three):
    c = config(agreement_top_k=5, max_new_tokens=16)
    alone = [generate(three, q, c) for q in QUESTIONS]
    together = dict(generate_many(three, QUESTIONS, c, batch_size=3))
    for i, r in enumerate(alone):
        assert together[i].text == r.text
        for a, b in zip(together[i].guides, r.guides):  # the same decisions; the reliability to float noise
            assert {**a, "reliability": 0} == {**b, "reliability": 0} and a["reliability"] == pytest.approx(b["reliability"], abs=1e-5)


def test_retiring_a_guide_saves_its_passes_on_real_models(three):
    # a floor of 1.0 retires each guide after its first consultations unless it always agrees with the base's top token
    r = generate(three, QUESTIONS[2], config(retire_below=1.0, retire_after=1, max_new_tokens=32))
    retired = [g for g in r.guides if g["retired_at"] is not None]
    assert retired and all(g["passes_saved"] > 0 and g["consulted"] >= 1 for g in retired)


def test_cli_mixes_a_local_guide_and_one_behind_a_server(embedded_pair):
    smol = embedded_pair.guide
    with CompletionServer(smol) as server:
        cmd = [sys.executable, "-m", "blendin", "generate", "--json", "--max-new-tokens", "12", "--gamma", "0.9",
               "--guide", "smollm2-135m-instruct", "--guide", f"smollm2-135m-instruct@{server.url}", QUESTIONS[0]]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    local, remote = d["guides"]
    assert remote["guide"] == f"smollm2-135m-instruct@{server.url}" and d["remote"]["guide 2"]["url"] == server.url
    assert d["requests"] >= 1 and local["consulted"] == remote["consulted"] >= 1
    # the same model on both sides: the remote one's top token is the local one's at every step
    for s in d["steps"]:
        if s["guides"]:
            assert s["guides"][0]["top"] == s["guides"][1]["top"]
