"""The server's pieces that need no real model: request validation, prompt rendering, the engine's
streaming on a scripted pair (fast; the server end to end is in test_server.py)."""

import logging
import threading

import pytest
from pydantic import ValidationError
from scripted import PLAIN, config, scripted_pair

from blendin.config import PromptFormat
from blendin.prompts import Rendered, base_chat_text, base_prompt
from blendin.server.engine import Engine, QueueFull
from blendin.server.protocol import ChatCompletionRequest, CompletionRequest, validation_error_body


def param_of(model, body) -> dict:
    with pytest.raises(ValidationError) as e:
        model.model_validate(body)
    return validation_error_body(e.value)["error"]


@pytest.mark.parametrize("body,param", [
    ({"model": "m", "prompt": "x", "temperature": 3}, "temperature"),
    ({"model": "m", "prompt": "x", "top_p": 0}, "top_p"),
    ({"model": "m", "prompt": "x", "n": 0}, "n"),
    ({"model": "m", "prompt": "x", "stop": [""]}, "stop"),
    ({"model": "m", "prompt": "x", "blendin": {"method": "nudge"}}, "blendin.method"),
    ({"model": "m", "prompt": "x", "blendin": {"gamma": 2}}, "blendin.gamma"),
    ({"model": "m", "prompt": "x", "blendin": {"beta": 1}}, "blendin.beta"),
    ({"model": "m", "prompt": {"a": 1}}, "prompt"),
    ({"prompt": "x"}, "model"),
])
def test_completion_errors_name_the_field(body, param):
    err = param_of(CompletionRequest, body)
    assert err["param"] == param and err["message"].startswith(param)


def test_did_you_mean_for_a_method():
    err = param_of(CompletionRequest, {"model": "m", "prompt": "x", "blendin": {"method": "blendn"}})
    assert "did you mean 'blendin'" in err["message"]


def test_chat_errors_name_the_field():
    assert param_of(ChatCompletionRequest, {"model": "m", "messages": []})["param"] == "messages"
    assert param_of(ChatCompletionRequest, {"model": "m", "messages": [{"role": "bot", "content": "x"}]})["param"] == "messages.0.role"
    assert "role 'user'" in param_of(ChatCompletionRequest, {"model": "m", "messages": [{"role": "system", "content": "x"}]})["message"]


def test_prompt_forms_and_unknown_fields():
    forms = ["hi", [1, 2], ["a", "b"], [[1], [2, 3]]]
    assert [len(CompletionRequest(model="m", prompt=p).prompts()) for p in forms] == [1, 1, 2, 2]
    req = CompletionRequest.model_validate({"model": "m", "prompt": "x", "user": "u1", "logit_bias": {}})
    assert req.stops() == ()  # OpenAI fields blendin does not use are accepted and ignored


def test_chat_text_for_the_base():
    fmt = PromptFormat()
    one = [{"role": "user", "content": "What is 2+3?"}]
    assert base_chat_text(fmt, one) == base_prompt(fmt, "What is 2+3?")
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "2+3?"}]
    assert base_chat_text(fmt, turns) == "Be brief.\nQuestion: Hi\nAnswer:\nHello.\nQuestion: 2+3?\nAnswer:\n"
    task = "Question: What is 2+3?\nAnswer:"  # a task's own frame (lm-eval's chat model sends it as the user message)
    assert base_chat_text(fmt, [{"role": "user", "content": task}]) == f"{fmt.system}\n{task}"
    shots = [{"role": "user", "content": "Question: 1+1?\nAnswer:"}, {"role": "assistant", "content": " 2"}, {"role": "user", "content": task}]
    assert base_chat_text(PromptFormat(system=""), shots) == f"Question: 1+1?\nAnswer: 2\n{task}"
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "developer", "content": "S"},
                                                                          {"role": "user", "content": [{"type": "text", "text": "U"}]}]})
    assert req.as_dicts() == [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]


BASE = {"": {"▁The": 1.0}, " The": {"▁cat": 1.0}, " The cat": {".": 1.0}, " The cat.": {"<eos>": 1.0}}


def run_engine(pair, cfg, n_rows=1, batch_size=4):
    events, done = [], threading.Event()

    def post(e):
        events.append(e)
        if sum(x[0] in ("done", "error") for x in events) == n_rows:
            done.set()

    engine = Engine(pair, batch_size=batch_size, max_queue=8)
    prompt = Rendered(tuple(pair.base.tokenizer.encode("Q\n")), tuple(pair.guide.tokenizer.encode("Q\n")) if pair.guide else None)
    engine.submit([(prompt, cfg)] * n_rows, post)
    assert done.wait(30)
    engine.stop()
    return events


def test_engine_streams_text_and_holds_back_a_stop_string():
    pair = scripted_pair(BASE, {})
    events = run_engine(pair, config(method="base", stop=("cat",)))
    streamed = "".join(e[2] for e in events if e[0] == "text")
    result = [e[2] for e in events if e[0] == "done"][0]
    assert result.text == " The " and streamed == result.text and result.stop_reason == "stop"
    whole = run_engine(pair, config(method="base"), n_rows=3)
    assert ["".join(e[2] for e in whole if e[0] == "text" and e[1] == i) for i in range(3)] == [" The cat."] * 3


def test_engine_reports_a_failing_row_and_keeps_serving(caplog):
    pair = scripted_pair({"": {"▁The": 1.0}}, {})  # no entry for " The": the script raises KeyError
    with caplog.at_level(logging.ERROR, logger="blendin.server"):
        events = run_engine(pair, config(method="base"))
    kind, _, message, status = events[-1]
    assert (kind, status) == ("error", 500) and "KeyError" not in message  # a fault of the server: logged, not told
    assert "KeyError" in caplog.text and message.split("[")[1].split("]")[0] in caplog.text
    assert run_engine(scripted_pair(BASE, {}), config(method="base"))[-1][0] == "done"


def test_engine_answers_a_row_the_request_made_impossible_with_400():
    pair = scripted_pair(BASE, {})
    no_guide = type(pair)(base=pair.base, guide=None)
    events = run_engine(no_guide, config(method="blendin"))  # the request asked for a method this pair cannot run
    kind, _, message, status = events[-1]
    assert (kind, status) == ("error", 400) and "needs a guide model" in message


def test_queue_bound():
    engine = Engine(scripted_pair(BASE, {}), batch_size=1, max_queue=2)
    engine.stop()  # the thread is gone: whatever is submitted waits
    prompt = Rendered((0,), (0,))
    engine.submit([(prompt, config(prompt=PLAIN))] * 2, lambda e: None)
    with pytest.raises(QueueFull, match="retry"):
        engine.submit([(prompt, config())], lambda e: None)
