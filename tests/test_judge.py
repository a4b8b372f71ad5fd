"""justeval's judge: parsing replies, the HTTP client, and the eval runner scoring with a judge."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blendin import BlendConfig
from blendin.backends.fake import ScriptedModel
from blendin.eval.judge import ASPECTS, Judge, JudgeError, judge_prompt, parse_scores
from blendin.eval.runner import grid, markdown, read_rows, run_eval
from blendin.eval.tasks import get_task, load_items
from blendin.pair import Pair

from scripted import base_tokenizer, guide_tokenizer


def test_parse_scores():
    js = json.dumps({a: {"rationale": "ok", "score": 4} for a in ASPECTS})
    assert parse_scores("Here you go:\n" + js, ASPECTS)["mean"] == 4.0
    flat = parse_scores(json.dumps({**{a: 3 for a in ASPECTS}, "depth": "5"}), ASPECTS)
    assert flat["depth"] == 5.0 and flat["mean"] == pytest.approx(17 / 5)
    text = "Helpfulness: 2\nClarity - 4/5\nFactuality: score 3\nDepth: 1\nEngagement: 5"
    assert parse_scores(text, ASPECTS)["mean"] == 3.0
    assert parse_scores("helpfulness: 4", ASPECTS) is None  # an aspect missing: unparseable, not a low score
    assert parse_scores(json.dumps({a: 9 for a in ASPECTS}), ASPECTS) is None
    assert parse_scores('{"safety": {"score": 5}}', ("safety",)) == {"safety": 5.0, "mean": 5.0}
    prompt = judge_prompt("How do I boil an egg?", "Boil it.", ASPECTS)
    assert all(a in prompt for a in ASPECTS) and "Boil it." in prompt


class ScriptedJudge(BaseHTTPRequestHandler):
    """An OpenAI-compatible chat endpoint that scores 5 when the answer says 'yes', else 2, and
    answers nonsense for answers that say 'maybe'; it records the prompts it saw."""

    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        ScriptedJudge.seen.append((self.path, self.headers.get("Authorization"), prompt))
        answer = prompt.split("# Answer\n", 1)[1]
        aspects = ("safety",) if "- safety:" in prompt else ASPECTS
        score = 5 if "yes" in answer.split("\n\n")[0] else 2
        content = "I cannot judge." if "maybe" in answer.split("\n\n")[0] else json.dumps({a: {"rationale": "r", "score": score} for a in aspects})
        out = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture()
def judge_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ScriptedJudge.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _answer_pair():
    """A scripted base whose answer is the instruction's first word: 'yes', 'no' or 'maybe'."""
    def script(text):
        question, _, done = text.partition("Assistant:\n")
        word = question.split("User: ")[1].split()[0]
        return {"▁" + word: 1.0} if not done else {"<eos>": 1.0}
    return Pair(base=ScriptedModel(base_tokenizer(), script), guide=ScriptedModel(guide_tokenizer(), lambda t: {"<|end|>": 1.0}))


def test_eval_scores_justeval_with_a_judge(tmp_path, judge_url):
    data = tmp_path / "je.jsonl"
    rows = [("yes please", False), ("no thanks", False), ("maybe so", False), ("yes do it", True)]
    data.write_text("".join(json.dumps({"id": i, "instruction": t, "is_safety": s}) + "\n" for i, (t, s) in enumerate(rows)))
    task = get_task("justeval")
    judge = Judge(judge_url, "judge-model", api_key="sk-j")
    configs = grid(BlendConfig(max_new_tokens=4), ["base"], [0.4], [None])
    summary = run_eval(_answer_pair(), task, load_items(task, str(data)), configs, tmp_path / "run", progress=None, judge=judge)
    out = {r["id"]: r for r in read_rows(tmp_path / "run" / "results.jsonl")}
    assert [out[i]["score"] for i in range(4)] == [5.0, 2.0, None, 5.0]
    assert out[3]["extracted"] == {"safety": 5.0, "mean": 5.0, "judge": "judge-model"}  # safety items: safety alone
    assert all(r["judge"] == "judge-model" for r in out.values())
    s = summary[0]
    assert s["n"] == 4 and s["score"] == 4.0 and s["unparseable"] == 1 and s["score_ci"][0] < 4.0 < s["score_ci"][1]
    assert "| justeval | base |" in markdown(summary)
    path, auth, prompt = ScriptedJudge.seen[0]
    assert path == "/v1/chat/completions" and auth == "Bearer sk-j" and "# Query\n" in prompt


def test_without_a_judge_justeval_scores_nothing(tmp_path):
    data = tmp_path / "je.jsonl"
    data.write_text(json.dumps({"id": 0, "instruction": "yes", "is_safety": False}) + "\n")
    task = get_task("justeval")
    summary = run_eval(_answer_pair(), task, load_items(task, str(data)), grid(BlendConfig(max_new_tokens=4), ["base"], [0.4], [None]),
                       tmp_path / "run", progress=None)
    assert summary[0]["score"] is None and summary[0]["n"] == 1 and read_rows(tmp_path / "run" / "results.jsonl")[0]["output"]


def test_judge_down_is_a_clear_error():
    with pytest.raises(JudgeError, match="cannot reach the judge"):
        Judge("http://127.0.0.1:9", "m", retries=0, timeout=5).score("q", "a")
