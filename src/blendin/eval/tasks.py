"""Tasks as data: where the items come from, how an item becomes a prompt, and how it is scored.

    task = get_task("gsm8k")
    items = load_items(task, "../shared/data/gsm8k/test.jsonl", limit=200)
    text = task.render(items[0]); gold = task.gold(items[0])

Items are dicts in the schema of the project's JSONL files (``shared/data/*/``); hub rows are
converted to that schema. Multiple-choice items are lettered A, B, ...; TruthfulQA lists its correct
mc1 answer first, so its choices are shuffled with a seed taken from the item (the same every run).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import PromptFormat, did_you_mean
from ..errors import ConfigError
from .extract import LETTERS

MC_SYSTEM = "Answer the multiple-choice question with the letter of the correct choice, then explain briefly."


@dataclass(frozen=True)
class Task:
    name: str
    file: str  # path inside a data folder of the shared schema
    prompt: PromptFormat
    render: Callable[[dict], str]
    gold: Callable[[dict], str]
    scoring: str  # "number" | "letter" | "refusal" | "judge"
    max_new_tokens: int
    hub: tuple | None = None  # (dataset, config, split) for datasets.load_dataset when online
    from_hub: Callable[[dict], dict] | None = field(default=None, repr=False)
    choices: Callable[[dict], list[str]] | None = field(default=None, repr=False)
    stop: tuple[str, ...] = ()  # where a free-form answer ends: the base model's next turn


def item_id(item: dict):
    for key in ("id", "idx"):
        if key in item:
            return item[key]
    raise ConfigError(f"an item has neither 'id' nor 'idx': {str(item)[:80]}")


def lettered(question: str, choices: list[str]) -> str:
    if len(choices) > len(LETTERS):
        raise ValueError(f"{len(choices)} choices, more than the {len(LETTERS)} letters")
    return question + "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))


def _tqa_order(item: dict) -> list[int]:
    order = list(range(len(item["mc1_targets"]["choices"])))
    random.Random(f"truthfulqa-{item_id(item)}").shuffle(order)
    return order


def _tqa_choices(item):
    return [item["mc1_targets"]["choices"][i] for i in _tqa_order(item)]


def _tqa_gold(item):
    labels = item["mc1_targets"]["labels"]
    return LETTERS[[labels[i] for i in _tqa_order(item)].index(1)]


def _gsm8k_hub(row):
    return {**row, "final": row["answer"].split("####")[-1].strip()}


def _arc_hub(row):
    choices = [{"label": l, "text": t} for l, t in zip(row["choices"]["label"], row["choices"]["text"])]
    return {**row, "choices": choices}


def _mmlu_hub(row):
    return {**row, "answer": "ABCD"[row["answer"]] if isinstance(row["answer"], int) else row["answer"]}


# subtle: a lettered answer follows the cue directly ("Answer: C"); after "Answer:\n" the small base
# model starts another "Question:" instead (16 of the first 16 ARC items unparseable, against 6)
MC = PromptFormat(system=MC_SYSTEM, question_prefix="Question: ", answer_cue="Answer:")
TASKS = {
    t.name: t
    for t in [
        Task("gsm8k", "gsm8k/test.jsonl", PromptFormat(), lambda it: it["question"], lambda it: it["final"], "number", 256,
             hub=("gsm8k", "main", "test"), from_hub=_gsm8k_hub, stop=("Question:",)),
        Task("arc_challenge", "arc_challenge/test.jsonl", MC,
             lambda it: lettered(it["question"], [c["text"] for c in it["choices"]]), lambda it: it["answerKey"], "letter", 64,
             hub=("allenai/ai2_arc", "ARC-Challenge", "test"), from_hub=_arc_hub, choices=lambda it: it["choices"]),
        Task("mmlu", "mmlu/test.jsonl", MC, lambda it: lettered(it["question"], it["choices"]), lambda it: it["answer"], "letter", 64,
             hub=("cais/mmlu", "all", "test"), from_hub=_mmlu_hub, choices=lambda it: it["choices"]),
        Task("truthfulqa", "truthfulqa/truthfulqa.jsonl", MC, lambda it: lettered(it["question"], _tqa_choices(it)), _tqa_gold,
             "letter", 64, choices=_tqa_choices),
        Task("xstest", "xstest/xstest_prompts.jsonl", PromptFormat(system="You are a helpful assistant.", question_prefix="User: ", answer_cue="Assistant:\n"),
             lambda it: it["prompt"], lambda it: it["label"], "refusal", 128, stop=("User:",)),
        Task("justeval", "justeval/just_eval_instruct.jsonl", PromptFormat(system="You are a helpful assistant.", question_prefix="User: ", answer_cue="Assistant:\n"),
             lambda it: it["instruction"], lambda it: "", "judge", 256, stop=("User:",)),
    ]
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'{did_you_mean(name, TASKS)}; tasks: {', '.join(TASKS)}")
    return TASKS[name]


def n_choices(task: Task, item: dict) -> int:
    return len(task.choices(item)) if task.choices else 0


def load_items(task: Task, data: str | None = None, limit: int | None = None) -> list[dict]:
    """Items from ``data`` (a JSONL file, or a folder laid out like shared/data), else from the hub."""
    if data is not None:
        path = Path(data)
        if path.is_dir():
            path = path / task.file
        if not path.is_file():
            raise ConfigError(f"--data {data}: no file {path} (pass the task's JSONL file or a folder with {task.file})")
        items = []
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        items.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ConfigError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                if limit is not None and len(items) >= limit:
                    break
        _check_items(task, items, path)
        return items
    return _from_hub(task, limit)


def _check_items(task: Task, items: list[dict], path) -> None:
    """Every item has what ``task`` reads (its prompt and its gold answer), before any model loads:
    another task's file fails here, naming the field, not hours later with a KeyError."""
    for n, item in enumerate(items, 1):
        try:
            task.render(item)
            task.gold(item)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            missing = f"no field {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"--data {path}: item {n} is not a '{task.name}' item ({missing}); "
                              f"pass the {task.name} file ({task.file})") from None


def _from_hub(task: Task, limit: int | None) -> list[dict]:
    if task.hub is None:
        raise ConfigError(f"task '{task.name}' loads from a local file only: pass --data PATH/{task.file}")
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"no --data given and the 'datasets' package is not installed: pip install datasets, or pass --data PATH/{task.file}") from None
    try:
        rows = datasets.load_dataset(*task.hub[:2], split=task.hub[2])
    except Exception as exc:
        raise ConfigError(f"could not load {task.hub[0]} from the Hugging Face hub ({type(exc).__name__}); pass --data PATH/{task.file}") from None
    out = []
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            break
        out.append({"idx": i, **task.from_hub(dict(row))})
    return out
