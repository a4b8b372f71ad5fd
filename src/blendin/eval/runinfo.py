"""``run.json``: the settings a run folder's results were made with, so a resume never mixes two.

A folder's ``results.jsonl`` rows are keyed by (task, method, gamma, alpha, id): the grid varies
those. Everything else that changes an output or a score is shared by the whole grid and written
once, before the first row, to ``out_dir/run.json``::

    {"format": 1, "tasks": {"gsm8k": {"base": "gemma-3-270m", "guide": "...", "max_new_tokens": 256,
                                      "temperature": 0.0, "top_p": 1.0, "seed": null, "stop": ["Question:"],
                                      "nudge_chunk": 16, "prompt": {...}, "base_remote": null,
                                      "guide_remote": null, "judge": null}}}

that is the fields of ``BlendConfig`` that change an answer (``ANSWER_FIELDS``; the resume key)
except the grid's own (method, gamma, alpha), with the device and dtype fields recorded as
``placement`` (what each local model's device and dtype resolve to on this machine,
``{"device": "cuda:0", "dtype": "bfloat16"}``; a folder recorded before they existed counts as
float32 on the CPU, as every run was then), after the task's prompt format and stop strings are
applied; the remote settings without ``api_key`` (a secret) and ``concurrency`` (throughput only);
for judge tasks the judge's url, model and max_tokens (never its key). The fields that change no
answer (``NOT_ANSWER_FIELDS``: ``trace_top``, ``speculate``, ``turn_stop``, each with its reason)
are not recorded, and a run.json that recorded one is compared without it (``normalised``). Every
field is in one list or the other: a field ``BlendConfig`` gains fails tests/test_runinfo.py until
it is placed, so no option is left out of the key by default. The batch size and the item file or
``--limit`` are not recorded: items are keyed by id, and batching does not change them.

A run into a folder whose ``run.json`` says otherwise for its task is refused with one line naming
the settings that differ (``check_run``, called by the CLI before any model loads, and by
``run_eval``); so is a folder with ``results.jsonl`` rows and no ``run.json`` (runs made before it
existed), since nothing says what those rows were made with. The fix is another ``--out``, or
deleting the folder. A field recorded since a folder was written counts as a difference unless
``LEGACY_DEFAULTS`` says what every run had before it: conservative, a resume is refused rather
than risk a mixed score. Each task has its own entry, so tasks can share
a folder as before.

    >>> from blendin.config import BlendConfig
    >>> from blendin.eval.tasks import get_task
    >>> s = run_settings(get_task("gsm8k"), BlendConfig(max_new_tokens=5, stop=("###",)))
    >>> s["max_new_tokens"], s["stop"], "method" in s, "trace_top" in s
    (5, ['###', 'Question:'], False, False)
    >>> differences({"seed": None, "prompt": {"system": "a", "answer_cue": "b"}}, {"seed": 1, "prompt": {"system": "a", "answer_cue": "c"}})
    ['prompt.answer_cue', 'seed']
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path

from ..config import BlendConfig
from ..errors import ConfigError
from ..jsonl import read_rows, replace_file

FORMAT = 1
# The BlendConfig fields that change an answer: together they are the resume key. By where a run
# folder keeps them:
ANSWER_FIELDS = {
    # the grid's own: they vary within a folder, and each results.jsonl row names them (``row_key``)
    "row": ("method", "gamma", "alpha"),
    # recorded as what they resolve to on this machine ("placement"): "auto" may mean a GPU here, the CPU there
    "placement": ("device", "dtype", "guide_device", "guide_dtype"),
    # recorded in run.json as given (remote servers without their secret and throughput knobs, ``UNRECORDED``)
    "settings": ("base", "guide", "max_new_tokens", "temperature", "top_p", "seed", "stop", "nudge_chunk", "prompt",
                 "base_remote", "guide_remote", "more_guides", "max_intervention_rate", "agreement_top_k", "reliability",
                 "retire_below", "retire_after", "capability_gap",
                 "backend", "guide_backend",  # llama.cpp computes in the GGUF's quantization, transformers in float32
                 "profile",  # its reliabilities and what it was fitted for (``Profile.key``), not its file's path
                 "repeat_stop"),  # ends an answer that repeats itself: a shorter text, perhaps another answer
}
# The fields that are no part of the key: never recorded, and dropped from a run.json that recorded
# them (the code before these lists recorded speculate) before it is compared. By reason:
NOT_ANSWER_FIELDS = {
    "detail": ("trace_top",),  # adds each step's top tokens to the result; the tokens are the same
    "passes": ("speculate",),  # the base checks every drafted token: the same tokens as off, in fewer passes
    "speed": ("threads",),  # llama.cpp's CPU threads: each logit is one thread's sum (the same numbers on 1 and 2, measured)
    "memory": ("context",),  # llama.cpp's cells per row: a row that does not fit fails before it decodes, the rest are the same
    "failure": ("on_guide_failure",),  # with every guide answering, the same tokens; a row that degraded says so itself
                                       # (guides[k].failed_at), and under "error" (eval's default) it is not written
    "fixed": ("turn_stop",),  # the same in every eval run (task_config turns it off): recording it would only
                              # refuse the folders made before it existed
}
RECORDED = ANSWER_FIELDS["settings"]
NOT_RECORDED = tuple(name for names in NOT_ANSWER_FIELDS.values() for name in names)
# where local models ran before blendin had --device/--dtype: a folder from then resumes on the same
LEGACY_PLACEMENT = {"device": "cpu", "dtype": "float32"}
# fields BlendConfig gained after run.json existed, with the value every run had before them: a folder
# recorded without them resumes where they are at that value (and only there)
LEGACY_DEFAULTS = {"more_guides": [], "max_intervention_rate": None, "agreement_top_k": None, "reliability": False,
                   "retire_below": None, "retire_after": 8, "capability_gap": None, "backend": "transformers",
                   "guide_backend": None, "profile": None, "repeat_stop": False}
UNRECORDED = ("api_key", "concurrency", "timeout", "retries")  # a remote server's: a secret; knobs of throughput and
                                                               # patience (the same tokens either way)
_MISSING = object()


def task_config(task, config: BlendConfig) -> BlendConfig:
    """The configuration a task's items are decoded with: its prompt format (the user's choice of
    base prompt kept), its stop strings added, and only those: a task says itself where its answers
    end (``Task.stop``), so the generic stop at the base's next turn is off (``turn_stop``)."""
    prompt = replace(task.prompt, base_prompt=config.prompt.base_prompt)
    return replace(config, prompt=prompt, stop=tuple(config.stop) + tuple(task.stop), turn_stop=False)


def run_settings(task, config: BlendConfig, judge=None) -> dict:
    """What ``run.json`` records for ``task`` run with ``config`` (a grid member, before ``task_config``)."""
    config = task_config(task, config)
    out = {}
    for name in RECORDED:
        value = getattr(config, name)
        if name == "profile":
            value = None if value is None else value.key()
        elif is_dataclass(value):
            value = _recorded(value)
        elif name == "more_guides":
            value = [_recorded(g) for g in value]
        out[name] = value
    out["placement"] = {role: _placed(config, role) for role in ("base", "guide")}
    judging = judge is not None and task.scoring == "judge"
    out["judge"] = {k: getattr(judge, k, None) for k in ("url", "model", "max_tokens")} if judging else None
    return json.loads(json.dumps(out))  # as it reads back: tuples become lists


def _placed(config: BlendConfig, role: str) -> dict | None:
    """Where a ``role`` model ran: None on a server, the CPU under llama.cpp (whatever --device says),
    else the device and dtype ``auto`` resolves to on this machine."""
    if getattr(config, f"{role}_remote") is not None:
        return None
    if config.backend_for(role) == "llama.cpp":
        return {"device": "cpu", "dtype": "gguf"}
    return config.placement(role).describe()


def _recorded(value) -> dict:
    """A settings dataclass as run.json records it: without secrets and throughput knobs, nested too."""
    return {k: ({kk: vv for kk, vv in v.items() if kk not in UNRECORDED} if isinstance(v, dict) else v)
            for k, v in asdict(value).items() if k not in UNRECORDED}


def differences(old, new, prefix: str = "") -> list[str]:
    """Names of the settings that differ, sorted; nested ones dotted ('prompt.system')."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix or "settings"]
    names = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, _MISSING), new.get(k, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            names += differences(a, b, f"{prefix}{k}.")
        elif a is _MISSING or b is _MISSING or a != b:
            names.append(f"{prefix}{k}")
    return names


def distinguishing(old: dict, new: dict) -> str:
    """What ``new`` sets where ``old`` differs, short enough and plain enough for a folder name:
    'retire_below=0.5', 'max_new_tokens=512,seed=1'; a value's characters other than letters, digits
    and ``._-`` become ``-`` (a path's slashes too), and past 60 characters the rest is a hash.

    >>> distinguishing({"retire_below": None, "retire_after": 8}, {"retire_below": 0.5, "retire_after": 8})
    'retire_below=0.5'
    >>> distinguishing({"guide": "a/g.gguf"}, {"guide": "x/g.gguf"})
    'guide=x-g.gguf'
    """
    text = ",".join(f"{name}={re.sub(r'[^A-Za-z0-9._-]+', '-', json.dumps(_lookup(new, name)).strip(chr(34)))}"
                    for name in differences(old, new)) or "same"
    return text if len(text) <= 60 else text[:51] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]


def _show(value) -> str:
    text = "(absent)" if value is _MISSING else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _lookup(settings: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(settings, dict) or part not in settings:
            return _MISSING
        settings = settings[part]
    return settings


def _advice(out: Path) -> str:
    return f"use another --out, or delete {out} to start again"


def normalised(old):
    """A task's recorded settings as this version records them: what a run.json from before a field
    existed implies (float32 on the CPU before --device/--dtype; one guide and no mitigation before
    several guides), and without the fields that change no answer (``NOT_RECORDED``: a run.json
    written before these lists recorded ``speculate``, and resumes whatever --speculate is now);
    anything but a dict as it is."""
    if not isinstance(old, dict):
        return old
    old = {k: v for k, v in old.items() if k not in NOT_RECORDED}
    if "placement" not in old:
        old = {**old, "placement": {role: None if old.get(f"{role}_remote") else dict(LEGACY_PLACEMENT) for role in ("base", "guide")}}
    return {**old, **{k: v for k, v in LEGACY_DEFAULTS.items() if k not in old}}


def check_run(out_dir, task, config: BlendConfig, judge=None) -> dict:
    """The settings to record for this run; ConfigError if ``out_dir`` holds results made otherwise.

    Reads only: safe to call before any model loads."""
    out = Path(out_dir)
    settings = run_settings(task, config, judge)
    path = out / "run.json"
    rows = read_rows(out / "results.jsonl")
    if not path.exists():
        if rows:
            raise ConfigError(f"{out} has results but no run.json (a run from before blendin recorded its settings), "
                              f"so nothing says what they were made with; {_advice(out)}")
        return settings
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read ({exc}); {_advice(out)}") from None
    if not isinstance(recorded, dict) or recorded.get("format") != FORMAT or not isinstance(recorded.get("tasks"), dict):
        raise ConfigError(f"{path} is not a run.json of format {FORMAT} (another blendin version?); {_advice(out)}")
    old = normalised(recorded["tasks"].get(task.name))
    if old is None:
        if any(r.get("task") == task.name for r in rows):
            raise ConfigError(f"{out} has {task.name} results but run.json has no settings for {task.name}, "
                              f"so nothing says what they were made with; {_advice(out)}")
        return settings
    diff = differences(old, settings)
    if diff:
        shown = "; ".join(f"{name}: {_show(_lookup(old, name))} there, {_show(_lookup(settings, name))} now" for name in diff)
        raise ConfigError(f"{out} holds {task.name} results made with other settings ({shown}); {_advice(out)}")
    return settings


def record_run(out_dir, task, configs: list[BlendConfig], judge=None) -> None:
    """Check ``out_dir`` (``check_run``) and write this run's settings to its run.json.

    The configurations must differ only in method, gamma and alpha (one grid)."""
    if not configs:
        return
    settings = run_settings(task, configs[0], judge)
    for config in configs[1:]:
        diff = differences(settings, run_settings(task, config, judge))
        if diff:
            raise ConfigError(f"one run folder holds one grid, and these configurations also differ in {', '.join(diff)}: "
                              "run them into separate out_dirs")
    check_run(out_dir, task, configs[0], judge)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run.json"
    tasks = json.loads(path.read_text(encoding="utf-8"))["tasks"] if path.exists() else {}
    if tasks.get(task.name) == settings:
        return
    write_run_json(out, {**tasks, task.name: settings})


def write_run_json(out_dir, tasks: dict[str, dict]) -> None:
    """``out_dir/run.json`` recording ``tasks`` ({task: settings}), whole or not at all."""
    replace_file(Path(out_dir) / "run.json", json.dumps({"format": FORMAT, "tasks": tasks}, indent=2, ensure_ascii=False) + "\n")
