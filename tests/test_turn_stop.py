"""An answer ends at the base's next turn ('\\nQuestion:'): in generate, the Python API and the
server's chat, by default; raw completions stop only where the request says, and eval tasks keep
their own stops. Issue 11: `blendin generate --method base "What is 12 * 7?"` printed
'12 * 7 = 144\\nQuestion: What is 12 * '."""

import json
from contextlib import contextmanager

import httpx2 as httpx
import pytest
from scripted import base_tokenizer

from blendin import BlendConfig, Blender, PromptFormat
from blendin.backends.fake import ScriptedModel
from blendin.cli import build_parser, config_from_args
from blendin.decoding import generate, generate_many
from blendin.eval.runinfo import check_run, run_settings, task_config
from blendin.eval.tasks import get_task
from blendin.pair import Pair
from blendin.server import ServerThread, build
from blendin.server.settings import ServeSettings

ANSWER = "12 times 7 is 84."
RUN_ON = ANSWER + "\nQuestion: What is 3 times 4?\nAnswer:\n12."


def writer(target: str, cue: str = "Answer:\n") -> ScriptedModel:
    """A base that writes ``target`` after the first ``cue`` of its context, a character a token,
    then ends (the text it has written so far must be a beginning of ``target``)."""
    def script(text):
        written = text.split(cue, 1)[1]
        assert target.startswith(written), written
        if written == target:
            return {"<eos>": 1.0}
        char = target[len(written)]
        return {"▁" if char == " " else char: 1.0}

    return ScriptedModel(base_tokenizer(), script, name="writer")


def writes(target: str, **kw) -> Pair:
    return Pair(base=writer(target, **kw), guide=None)


BASE = BlendConfig(method="base", max_new_tokens=200)  # the default prompt format: 'Question: ' ... 'Answer:\n'


# -- where an answer ends ----------------------------------------------------------------------------

def test_generate_stops_at_the_base_next_turn():
    r = generate(writes(RUN_ON), "What is 12 times 7?", BASE)
    assert r.text == ANSWER and r.stop_reason == "stop"
    assert r.tokens == len(ANSWER) + len("\nQuestion:")  # it stopped there: no tokens spent on the run-on


def test_an_answer_that_starts_with_the_next_turn_is_empty():
    r = generate(writes("Question: What is 5?\nAnswer:\n5."), "What is 12 times 7?", BASE)
    assert r.text == "" and r.stop_reason == "stop"


def test_the_prefix_inside_a_line_is_not_a_turn():
    text = "The Question: is what 12 times 7 is. It is 84."
    r = generate(writes(text), "What is 12 times 7?", BASE)
    assert r.text == text and r.stop_reason == "eos"


def test_turn_stop_false_writes_on():
    r = generate(writes(RUN_ON), "What is 12 times 7?", BASE.with_(turn_stop=False))
    assert r.text == RUN_ON and r.stop_reason == "eos"


def test_the_python_api_and_many_prompts_stop_at_the_turn_too():
    blender = Blender(pair=writes(RUN_ON), method="base", max_new_tokens=200)
    assert blender("What is 12 times 7?").text == ANSWER
    assert [r.text for r in blender(["What is 12 times 7?", "And 7 times 12?"])] == [ANSWER, ANSWER]
    assert blender.with_(turn_stop=False)("What is 12 times 7?").text == RUN_ON
    assert [r.text for _, r in generate_many(writes(RUN_ON), ["a?", {"prompt": "b?", "system": "Be brief."}], BASE)] == [ANSWER, ANSWER]


def test_another_question_prefix_gives_another_turn():
    fmt = PromptFormat(system="", question_prefix="User: ", answer_cue="Assistant:\n")
    r = generate(writes(ANSWER + "\nUser: thanks", cue="Assistant:\n"), "What is 12 times 7?", BASE.with_(prompt=fmt))
    assert r.text == ANSWER and r.stop_reason == "stop"


def test_which_stops_apply():
    assert BlendConfig().stops == ("\nQuestion:",)
    assert BlendConfig().stops_at_start == ("Question:",)
    assert BlendConfig(stop=("###",)).stops == ("###", "\nQuestion:")
    # not added twice: a stop string that occurs in the turn already catches it first
    assert BlendConfig(stop=("Question:",)).stops == ("Question:",)
    assert BlendConfig(stop=("\n",)).stops == ("\n",)
    assert BlendConfig(turn_stop=False).stops == () and BlendConfig(turn_stop=False).stops_at_start == ()
    assert BlendConfig(prompt=PromptFormat(question_prefix="")).stops == ()  # no prefix, no turn to see
    # a base reading its own chat template ends its turn with its end token
    assert BlendConfig(prompt=PromptFormat(base_prompt="chat")).stops == ()
    # after a cue without a newline the answer does not start a line
    assert BlendConfig(prompt=PromptFormat(answer_cue="Answer:")).stops_at_start == ()
    with pytest.raises(Exception, match="turn_stop must be True or False"):
        BlendConfig(turn_stop="no")


def test_eval_tasks_keep_their_own_stops(tmp_path):
    assert task_config(get_task("gsm8k"), BlendConfig()).stops == ("Question:",)
    assert task_config(get_task("xstest"), BlendConfig()).stops == ("User:",)
    assert task_config(get_task("arc_challenge"), BlendConfig()).stops == ()  # lettered: 64 tokens, as before
    # always off under a task, so not recorded: a run folder made before the field existed resumes
    settings = run_settings(get_task("gsm8k"), BlendConfig())
    assert "turn_stop" not in settings
    (tmp_path / "run.json").write_text(json.dumps({"format": 1, "tasks": {"gsm8k": settings}}))
    check_run(tmp_path, get_task("gsm8k"), BlendConfig(turn_stop=False))


def test_the_cli_stops_at_the_turn_unless_told_not_to():
    parse = build_parser().parse_args
    assert config_from_args(parse(["generate", "q"])).turn_stop is True
    assert config_from_args(parse(["generate", "--no-turn-stop", "q"])).turn_stop is False
    assert config_from_args(parse(["serve", "--no-turn-stop"])).turn_stop is False


# -- the server: chat stops at the turn (streamed too), raw completions do not ----------------------

@contextmanager
def serving(pair, cfg):
    with ServerThread(build(pair, cfg, ServeSettings())) as url:
        yield url


def chat(url, **fields):
    return httpx.post(url + "/chat/completions", timeout=30,
                      json={"model": "blendin", "messages": [{"role": "user", "content": "What is 12 times 7?"}], **fields})


def test_server_chat_stops_at_the_turn_streamed_or_not():
    with serving(writes(RUN_ON), BASE) as url:
        plain = chat(url).json()
        streamed = chat(url, stream=True)
    assert plain["choices"][0]["message"]["content"] == ANSWER and plain["choices"][0]["finish_reason"] == "stop"
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
    assert "".join(deltas) == ANSWER  # the held-back '\nQuestion' never went out
    assert not any("Q" in d or "\n" in d for d in deltas)


def test_server_raw_completions_stop_only_where_the_request_says():
    prompt = "Question: What is 12 times 7?\nAnswer:\n"
    with serving(writes(RUN_ON), BASE) as url:
        raw = httpx.post(url + "/completions", json={"model": "blendin", "prompt": prompt}, timeout=30).json()
        asked = httpx.post(url + "/completions", json={"model": "blendin", "prompt": prompt, "stop": ["\nQuestion:"]}, timeout=30).json()
    assert raw["choices"][0]["text"] == RUN_ON  # the client's own format: continued as vLLM would
    assert asked["choices"][0]["text"] == ANSWER


def test_server_no_turn_stop_lets_chat_write_on():
    with serving(writes(RUN_ON), BASE.with_(turn_stop=False)) as url:
        assert chat(url).json()["choices"][0]["message"]["content"] == RUN_ON


def test_server_stream_of_an_answer_that_starts_with_the_next_turn_sends_no_text():
    with serving(writes("Question: What is 5?\nAnswer:\n5."), BASE) as url:
        streamed = chat(url, stream=True)
    chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]] == ["", None]  # the role, then the finish
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
