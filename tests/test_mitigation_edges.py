"""Issue 33's defects in the mitigations, each with the case that showed it (scripted models, exact numbers):
the agreement filter and the budget at their edges, a filtered guide's weight, nudging's counts and
its refusal of reliability weighting, retirement under the guide drafter; and a new mitigation is one
object the loop composes, with no edit to ``decoding``."""

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from blendin.blend import guide_weights
from blendin.config import BlendConfig
from blendin.decoding import Generation, generate
from blendin.errors import ConfigError
from blendin.mitigations import AgreementFilter, InterventionBudget, Mitigation, Oversight

from scripted import config
from test_guides import AGREES, ODD, UNSURE, pair_of, two
from test_speculative import base_script
from test_speculative import pair_of as one_tokenizer_pair


def test_agreement_filter_never_accepts_a_token_the_base_gives_nothing():
    # fewer than k tokens with mass: the k-th probability is 0, and a 0 token used to pass
    base = torch.tensor([0.6, 0.4, 0.0, 0.0])
    assert not AgreementFilter(3).accepts(base, base_token=2)
    assert AgreementFilter(3).accepts(base, base_token=1)


def test_a_budget_of_zero_never_guides():
    assert not InterventionBudget(0.0).allows(tokens=0, interventions=0)
    assert InterventionBudget(0.1).allows(tokens=0, interventions=0)
    r = generate(pair_of(UNSURE, AGREES), "Q", config(method="blendin", gamma=0.5, max_intervention_rate=0.0, max_new_tokens=4))
    assert [s.source for s in r.steps] == ["base"] * 4 and r.interventions == 0 and r.held == {"budget": 4}


def test_a_filtered_guide_gives_its_share_to_the_base_not_to_the_other_guides():
    r = generate(pair_of(UNSURE, ODD, AGREES), "Q", two(method="blendin", gamma=0.5, agreement_top_k=2, max_new_tokens=1))
    odd, agrees = r.steps[0].guides
    assert not odd["kept"] and agrees["kept"]
    # the rule weighs both guides consulted (m_b 0.4, both m 0.9; AGREES's top 'yes' has p_b 0.3)
    expected = guide_weights(0.4, [0.9, 0.9], [0.0, 0.3])[1]
    assert agrees["weight"] == pytest.approx(expected) and r.steps[0].alpha == pytest.approx(expected)
    assert expected < guide_weights(0.4, [0.9], [0.3])[0]  # renormalised over the kept guide alone it would be larger


def test_nudging_refuses_reliability_weighting_before_any_model_loads():
    with pytest.raises(ConfigError, match="reliability.*nudging|nudging.*reliability"):
        BlendConfig(method="nudging", reliability=True)
    BlendConfig(method="nudging", retire_below=0.5, agreement_top_k=5, max_intervention_rate=0.2)  # these it honours


def test_nudging_counts_each_token_its_guide_writes_as_an_intervention():
    # two-token words (' yes' then '.'); the base stays unsure, so a nudge writes several words
    words = lambda text: {".": 0.9, "Ġno": 0.1} if text.endswith("yes") else {"Ġyes": 0.9, "Ġno": 0.1}  # noqa: E731
    r = generate(pair_of(UNSURE, words), "Q", config(method="nudging", gamma=0.5, nudge_chunk=6, max_new_tokens=8))
    written = sum(s.source == "guide" for s in r.steps)
    word_starts = sum(s.source == "guide" and s.base_top_prob is not None for s in r.steps)
    assert written > word_starts >= 1
    assert r.guides[0]["interventions"] == written == r.interventions


def _never_agrees(gen):
    """The guide is sure of a word the base never leads with at its unsure steps."""
    words = gen.split()
    return {"<|im_end|>": 1.0} if len(words) >= 7 else {"Ġmaybe": 0.9, "Ġyes": 0.05, "Ġno": 0.05}


@pytest.mark.parametrize("speculate", ["guide", "auto"])
def test_a_retired_guide_drafts_no_more(speculate):
    pair = one_tokenizer_pair(base_script, _never_agrees)
    g = Generation(pair, "q?", config(method="blendin", speculate=speculate, retire_below=0.99, retire_after=1))
    after = []
    for _ in g:
        if g.guide_retired(0):
            after.append(g.guides[0].passes)
    r = g.result()
    assert r.guides[0]["retired_at"] is not None and r.guides[0]["passes_saved"] > 0
    assert len(after) > 1 and len(set(after)) == 1, f"the retired guide ran passes: {after}"


@dataclass(frozen=True)
class EveryOther(Mitigation):
    """A new mitigation, defined here: guidance only at even token counts."""

    name = "every-other"

    def allows(self, tokens: int, interventions: int) -> bool:
        return tokens % 2 == 0


def test_a_new_mitigation_is_one_object_and_the_loop_names_none(monkeypatch):
    import blendin.decoding as decoding

    monkeypatch.setattr(decoding, "mitigations_for", lambda config: (EveryOther(),))
    r = generate(pair_of(UNSURE, AGREES), "Q", config(method="blendin", gamma=0.5, max_new_tokens=4))
    assert [s.source for s in r.steps] == ["blend", "base", "blend", "base"] and r.held == {"every-other": 2}
    _no_mitigation_names(Path(decoding.__file__))


QUANTITIES = {"agreement", "reliability"}


def _no_mitigation_names(path: Path) -> None:
    """No mitigation's class or name in the loop's code: no class named, no string that is a
    mitigation's name (what ``held`` counts by), no word of what one does. ('agreement' and
    'reliability' are also the method's quantities, p_b[t_g] and r_k, which each step's ``guides``
    reports under those keys: they are allowed as such.)"""
    import ast

    from blendin import mitigations

    classes = [c for c in vars(mitigations).values() if isinstance(c, type) and issubclass(c, Mitigation) and c is not Mitigation]
    text = path.read_text(encoding="utf-8")
    strings = {n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    found = [c.__name__ for c in classes if c.__name__ in text] + [c.name for c in classes if c.name in strings - QUANTITIES]
    found += [w for w in ("budget", "retire ", "retirement", "filter") if w in text.lower()]
    assert not found, f"{path.name} names mitigations: {found}"
