"""lm-evaluation-harness itself against ``blendin serve`` (slow: real models; runs in CI on a few
items): ARC-Challenge as multiple choice (echo + logprobs under each method) and GSM8K generated,
through lm-eval's ``local-completions`` model with its remote tokenizer (GET /tokenizer_info,
POST /tokenize), over the task files in benchmarks/lm_eval and the first items of ../shared/data."""

import os
from pathlib import Path

import pytest

from blendin import BlendConfig
from blendin.server import ServerThread, build
from blendin.server.settings import ServeSettings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
METHODS = ("base", "guide", "switch", "blendin", "nudging")  # nudging: generated only (its words do not score token by token)


def tasks_at(tmp_path: Path) -> Path:
    """The task files with their data paths made absolute (lm-eval reads them from its working folder)."""
    for f in (ROOT / "benchmarks" / "lm_eval").glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text().replace("../shared/data", str(DATA)))
    return tmp_path


def run_lm_eval(url: str, tasks: list[str], include: Path, limit: int, **kw) -> dict:
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(model="local-completions", tasks=tasks, limit=limit, batch_size=4, log_samples=False,
                                  model_args={"base_url": f"{url}/completions", "model": "blendin", "num_concurrent": 1, "max_retries": 1},
                                  task_manager=TaskManager(include_path=str(include)), **kw)
    return out["results"]


@pytest.mark.skipif(not (DATA / "arc_challenge" / "test.jsonl").is_file(), reason="needs ../shared/data")
def test_lm_eval_runs_multiple_choice_and_generation_for_every_method(tmp_path, embedded_pair):
    include = tasks_at(tmp_path)
    scores = {}
    for method in METHODS:
        app = build(embedded_pair, BlendConfig(method=method), ServeSettings(port=0))
        with ServerThread(app) as url:
            gsm = run_lm_eval(url, ["gsm8k_blendin"], include, limit=3, gen_kwargs={"max_gen_toks": 48})["gsm8k_blendin"]
            if method == "nudging":
                scores[method] = (None, gsm["exact_match,flexible-extract"])
                continue
            arc = run_lm_eval(url, ["arc_challenge_blendin"], include, limit=8)["arc_challenge_blendin"]
        scores[method] = (arc["acc,none"], gsm["exact_match,flexible-extract"])
        assert 0.0 <= arc["acc,none"] <= 1.0 and 0.0 <= arc["acc_norm,none"] <= 1.0
    assert len(scores) == len(METHODS)
