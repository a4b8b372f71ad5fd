"""Models on a device and in a dtype: the embedded pair in bfloat16 on whatever device this machine has
(the CPU in CI, a GPU where there is one), batched against one row at a time for every method."""

import json
import subprocess
import sys

import pytest
import torch

from blendin import BlendConfig
from blendin.models import cache_dir, prepare
from blendin.pair import load_pair
from blendin.parity import greedy_parity, pass_parity
from test_batching import PROMPTS  # four prompts of different lengths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def half_pair():
    """The embedded pair in bfloat16, on the GPU where there is one; the cache folder is not written to."""
    config = BlendConfig(device="auto", dtype="bfloat16")
    for spec in (config.base, config.guide):
        prepare(spec)  # converted (float32) before the listing below, as make's set-up leaves them
    folders = sorted(p.name for p in (cache_dir() / "models").iterdir())
    files = {p: sorted(f.name for f in (cache_dir() / "models" / p).iterdir()) for p in folders}
    pair = load_pair(config, methods=("base", "guide"))
    assert sorted(p.name for p in (cache_dir() / "models").iterdir()) == folders  # one float32 copy, cast as it loads
    assert {p: sorted(f.name for f in (cache_dir() / "models" / p).iterdir()) for p in folders} == files
    return pair


def test_weights_in_the_dtype_distributions_in_float32_on_the_device(half_pair):
    expected = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    for model in (half_pair.base, half_pair.guide):
        assert {p.dtype for p in model.model.parameters()} == {torch.bfloat16}
        assert model.device == expected
        s = model.session()
        s.sync(model.tokenizer.encode_prompt("Question: 2+3?\nAnswer:"))
        lp = s.logprobs()
        assert lp.dtype == torch.float32 and lp.device == expected and abs(float(torch.exp(lp).sum()) - 1) < 1e-3
    assert half_pair.bridge.device == expected


def test_a_batched_pass_matches_one_row(half_pair):
    for model in (half_pair.base, half_pair.guide):
        ids = [model.tokenizer.encode_prompt(p) for p in PROMPTS]  # 4 lengths: padded prompt pass, then decode passes
        r = pass_parity(model, ids)
        assert r["ok"], r


@pytest.mark.parametrize("method", ["base", "guide", "switch", "nudging", "blendin"])
def test_batched_greedy_matches_alone(half_pair, method):
    """Every method: the batched answers are the one-row answers, or part from them only at a near tie
    (half precision adds in other orders when rows are padded together)."""
    r = greedy_parity(half_pair, PROMPTS, BlendConfig(method=method, max_new_tokens=24), batch_size=3)
    assert r["ok"], r
    assert r["agreeing_tokens"] >= r["tokens"] // 2, r  # not an answer that goes its own way from the start


def test_cli_on_the_cpu_in_bfloat16():
    p = subprocess.run([sys.executable, "-m", "blendin", "generate", "--device", "cpu", "--dtype", "bfloat16", "--max-new-tokens", "24",
                        "--json", "What is 12 * 7?"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["text"].strip() and result["tokens"] > 0 and result["stop_reason"] in ("stop", "eos", "length")
