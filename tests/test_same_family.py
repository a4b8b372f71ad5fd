"""Same-tokenizer pairs on real models (the paper's setting): Qwen2.5-Coder-0.5B-Instruct guiding
itself, and the end tokens and control tokens of the real Qwen, Gemma and SmolLM2 tokenizers.

One set of weights serves both roles (two ``HFModel``s over one torch module, each with its own
cache), which is enough to exercise one tokenizer on both sides and keeps CI's memory small.
"""

import pytest
import torch

from blendin import BlendConfig, PromptFormat
from blendin.backends.hf import HFModel
from blendin.decoding import generate, generate_many
from blendin.pair import Pair

pytestmark = pytest.mark.slow

QWEN = "qwen2.5-coder-0.5b-instruct"
QUESTION = "What is the capital of France?"
IM_END, END_OF_TEXT, IM_START = 151645, 151643, 151644


def tokenizer(spec):
    from transformers import AutoTokenizer

    from blendin.backends.hf import HFTokenizer
    from blendin.models import prepare

    return HFTokenizer(AutoTokenizer.from_pretrained(str(prepare(spec))))


@pytest.mark.parametrize("spec, ends", [
    (QWEN, {END_OF_TEXT, IM_END}),  # the GGUF's eos is <|im_end|>; <|endoftext|> ends a document
    ("gemma-3-270m", {1, 106}),  # <eos>, <end_of_turn>
    ("smollm2-135m-instruct", {0, 2}),  # <|endoftext|>, <|im_end|>
])
def test_every_end_token_of_the_real_tokenizers(spec, ends):
    """Unfixed, Qwen's <|endoftext|> and Gemma's <end_of_turn> were ordinary (empty) tokens."""
    assert tokenizer(spec).eos_ids == ends


@pytest.fixture(scope="module")
def qwen_pair():
    from blendin.models import load_model

    base = load_model(QWEN)
    guide = HFModel(base.model, base.tokenizer.tok, name=f"{QWEN} (guide)")
    return Pair(base=base, guide=guide)


def test_the_bridge_is_an_identity_that_drops_control_tokens(qwen_pair):
    bridge, tok = qwen_pair.bridge, qwen_pair.base.tokenizer
    assert bridge.identity and qwen_pair.base.vocab_size == 151936
    probs = torch.zeros(qwen_pair.guide.vocab_size)
    probs[[IM_START, IM_END, END_OF_TEXT, tok.encode(" Paris")[0]]] = torch.tensor([0.2, 0.3, 0.1, 0.4])
    carried = bridge.to_base(probs)
    assert carried[IM_START] == 0 and float(carried.sum()) == pytest.approx(1.0)
    assert carried[IM_END] == pytest.approx(0.375) and carried[END_OF_TEXT] == pytest.approx(0.125)


@pytest.mark.parametrize("method", ["base", "guide", "switch", "nudging", "blendin"])
def test_every_method_answers_and_ends_on_its_own(qwen_pair, method):
    """The base alone reads the chat template (it is instruction-tuned); the guided methods give the
    base plain text and consult the guide at every step (gamma 1), so the answer ends where the
    guide's end of turn, carried through the bridge, wins the step."""
    base_prompt = "chat" if method == "base" else "plain"
    config = BlendConfig(method=method, gamma=1.0, max_new_tokens=32,
                         prompt=PromptFormat(system="Answer briefly.", base_prompt=base_prompt))
    r = generate(qwen_pair, QUESTION, config)
    assert r.stop_reason == "eos" and r.tokens < 32, (method, r.text)
    assert "Paris" in r.text and "<|" not in r.text
    last = r.steps[-1]
    assert last.token == "" and last.token_id in (IM_END, END_OF_TEXT)
    assert "".join(s.token for s in r.steps) == r.text
    if method in ("switch", "blendin"):
        assert r.interventions == r.tokens  # gamma 1: the guide was consulted at every step


def test_same_tokenizer_batch_matches_alone(qwen_pair):
    config = BlendConfig(method="blendin", max_new_tokens=12, prompt=PromptFormat(system="Answer briefly."))
    prompts = [QUESTION, "Name a colour.", "What is 7 times 8?"]
    alone = [generate(qwen_pair, p, config) for p in prompts]
    together = dict(generate_many(qwen_pair, prompts, config, batch_size=2))
    for i, r in enumerate(alone):
        assert [s.token_id for s in together[i].steps] == [s.token_id for s in r.steps]


def test_gemma_guided_by_itself_keeps_its_turn_ends_and_drops_its_controls():
    """Gemma-3's tokenizer on both sides: identity, with <start_of_turn> (a control token) dropped and
    <end_of_turn> carried as an end token. (The embedded Gemma-3-270m is pretrained: through Gemma's
    chat template it never closes a turn, so its generations are not asked to end here.)"""
    from blendin.vocab import VocabBridge

    tok = tokenizer("gemma-3-270m")
    bridge = VocabBridge.build(tok, tok, 262144, 262144)
    start, end, eos = tok.tok.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>", "<eos>"])
    assert bridge.identity and (start, end, eos) == (105, 106, 1)
    probs = torch.zeros(262144)
    probs[[start, end, tok.encode(" Paris")[0]]] = torch.tensor([0.5, 0.25, 0.25])
    carried = bridge.to_base(probs)
    assert carried[start] == 0 and carried[end] == pytest.approx(0.5) and float(carried.sum()) == pytest.approx(1.0)
