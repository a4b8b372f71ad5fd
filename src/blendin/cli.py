"""The ``blendin`` command: thin wrappers over ``BlendConfig``, ``load_pair`` and ``generate``.

    blendin generate "What is 12 * 7?"                 # BlendIn on the embedded pair
    blendin generate --method nudging --json - < q.txt
    blendin generate --input prompts.jsonl --output results.jsonl --batch-size 8
    blendin demo                                       # one question: base alone, guide alone, BlendIn
    blendin prepare                                    # convert and cache the embedded pair
    blendin eval --task gsm8k --data ../shared/data/gsm8k/test.jsonl --limit 20 --method base,blendin --out runs/g
    blendin diagnose --task gsm8k --data ../shared/data/gsm8k/test.jsonl
    blendin serve --port 8000                           # OpenAI-compatible API on 127.0.0.1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

from .config import BACKENDS, DEFAULT_BASE, DEFAULT_GUIDE, METHODS, BlendConfig, GuideSpec, PromptFormat, RemoteSpec
from .cliargs import (Help, Parser, UsageError, add_decoding_options, add_diagnose_options, add_eval_options, add_models,
                      alpha_value, flagged, number, overview, unknown_options, whole)
from .errors import BlendinError, ConfigError

def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("blendin")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: not installed)"


def _guides(a: argparse.Namespace) -> dict:
    """The BlendConfig fields of the --guide options: the first guide (and its server, from
    --guide-url or MODEL@URL) and any more (``GuideSpec``s)."""
    specs = [_guide_spec(text, a) for text in (a.guide or [DEFAULT_GUIDE])]
    first = specs[0]
    remote = _remote(a, "guide") if hasattr(a, "guide_url") else None
    if remote is not None and first.remote is not None:
        raise ConfigError(f"the first guide is served from {first.remote.url} (--guide {a.guide[0]}) and from --guide-url too; give one")
    return {"guide": first.model, "guide_remote": remote or first.remote, "more_guides": tuple(specs[1:])}


def _guide_spec(text: str, a: argparse.Namespace) -> GuideSpec:
    """--guide MODEL, or MODEL@URL: a guide behind an OpenAI-compatible server, serving it as MODEL."""
    model, at, url = text.partition("@")
    if not at or not url.startswith(("http://", "https://")):
        return GuideSpec(text)
    if not model:
        raise ConfigError(f"--guide {text}: name the model before the @ (--guide MODEL@URL)")
    return GuideSpec(model, RemoteSpec(url, model, api_key=getattr(a, "api_key", None), top_k=getattr(a, "top_k", RemoteSpec.top_k),
                                       chunk=getattr(a, "chunk", RemoteSpec.chunk), concurrency=getattr(a, "concurrency", RemoteSpec.concurrency),
                                       **_patience(a, "guide")))


def _patience(a: argparse.Namespace, role: str) -> dict:
    """A guide's server's timeout and retries (--guide-timeout, --guide-retries); a base's keep the defaults."""
    if role != "guide":
        return {}
    return {"timeout": getattr(a, "guide_timeout", RemoteSpec.timeout), "retries": getattr(a, "guide_retries", RemoteSpec.retries)}


def _mitigations(a: argparse.Namespace) -> dict:
    return {"max_intervention_rate": a.max_intervention_rate, "agreement_top_k": a.agreement_top_k, "reliability": a.reliability,
            "retire_below": a.retire_below, "retire_after": a.retire_after, "capability_gap": a.capability_gap,
            "profile": a.profile}


def _placement(a: argparse.Namespace) -> dict:
    """The BlendConfig fields of --device, --dtype, --guide-device, --guide-dtype, --backend, --guide-backend,
    --threads, --context."""
    return {"device": a.device, "dtype": a.dtype, "guide_device": a.guide_device, "guide_dtype": a.guide_dtype,
            "backend": a.backend, "guide_backend": a.guide_backend, "threads": a.threads, "context": a.context}


def config_from_args(a: argparse.Namespace) -> BlendConfig:
    return BlendConfig(
        base=a.base, method=a.method, gamma=a.gamma, alpha=a.alpha,
        max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p, seed=a.seed,
        stop=tuple(a.stop), prompt=PromptFormat(a.system, a.question_prefix, a.answer_cue, a.base_prompt), turn_stop=a.turn_stop,
        base_remote=_remote(a, "base"), trace_top=5 if getattr(a, "trace_html", None) else 0,
        speculate=a.speculate, on_guide_failure=getattr(a, "on_guide_failure", None) or "degrade", repeat_stop=a.repeat_stop,
        **_guides(a), **_placement(a), **_mitigations(a),
    )


def _remote(a: argparse.Namespace, role: str):
    url, model = getattr(a, f"{role}_url"), getattr(a, f"{role}_model")
    if url is None and model is None:
        return None
    if not url or not model:
        raise ConfigError(f"--{role}-url and --{role}-model go together: the server's address and the model name it serves")
    return RemoteSpec(url, model, api_key=a.api_key, top_k=a.top_k, chunk=a.chunk,
                      concurrency=getattr(a, "concurrency", RemoteSpec.concurrency), **_patience(a, role))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="blendin", description="Guided decoding by probabilistic model blending (BlendIn).", formatter_class=Help)
    parser.add_argument("--version", action="version", version=f"blendin {_version()}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .eval.tasks import TASKS

    task_tokens = ", ".join(f"{t.name} {t.max_new_tokens}" for t in TASKS.values())

    def command(name: str, text: str, more: str = "") -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text + more, formatter_class=Help)

    gen = command("generate", "answer one prompt, or a JSONL file of prompts (--input with --output)")
    gen.add_argument("prompt", nargs="?", help="the question, or '-' to read it from stdin")
    gen.add_argument("--input", metavar="FILE", help="JSONL file, one {\"prompt\", \"id\"?, \"system\"?} per line, instead of PROMPT; needs --output")
    gen.add_argument("--output", metavar="FILE", help="JSONL results file, with --input (required with it); a re-run skips the ids already in it")
    gen.add_argument("--batch-size", type=whole(1), default=16, help="prompts decoded together with --input (16 runs about 6x the speed of one at a time on 2 cores)")
    gen.add_argument("--trace-html", metavar="FILE", help="also write a page showing who chose each token (hover a token for details); with PROMPT")
    add_decoding_options(gen, "generate")
    from .demo import add_demo_options

    demo = command("demo", "one question answered three ways, base alone, guide alone and BlendIn, the guided tokens marked")
    add_decoding_options(demo, "demo")
    add_demo_options(demo)

    ev = command("eval", "score methods on a benchmark task; results.jsonl + summary.json in --out")
    add_eval_options(ev, task_tokens)

    dg = command("diagnose", "pair health check: intervention rate on a small sample of a task, and a verdict")
    add_diagnose_options(dg, task_tokens)

    rep = command("report", "tables, paired comparisons and PNG plots from eval run folders")
    rep.add_argument("runs", nargs="+", help="folders written by blendin eval --out (a grid's --out stands for its pairs)")
    rep.add_argument("--compare", action="append", default=None, metavar="A:B",
                     help="compare method A with method B item by item, per pair and task (repeatable; default: blendin:base, blendin:switch, blendin:nudging)")
    rep.add_argument("--out", default="report", metavar="DIR", help="folder for the PNG files (created if missing)")
    rep.add_argument("--keep-rows", action="store_true",
                     help="also write every row, without the answers' text and gold answers, to DIR/rows (small enough to "
                     "commit); 'blendin report DIR/rows' makes the same report from them once the run folders are gone")

    sv = command("serve", "an OpenAI-compatible API (/v1/completions, /v1/chat/completions) over the pair",
                 "; the decoding options below are the defaults of requests that leave them out")
    from .server.settings import ServeSettings

    d = ServeSettings()
    sv.add_argument("--host", default=d.host, help="address to bind; 127.0.0.1 is this machine only")
    sv.add_argument("--port", type=whole(0, 65535), default=d.port, help="port to listen on; 0 takes any free one")
    sv.add_argument("--api-key", dest="server_api_key", default=None, metavar="KEY", help="clients must send 'Authorization: Bearer KEY' (default: $BLENDIN_SERVE_API_KEY; unset = no key)")
    sv.add_argument("--served-model-name", default=d.model_name, help="the model id clients ask for")
    sv.add_argument("--batch-size", type=whole(1), default=d.batch_size, help="rows decoded together")
    sv.add_argument("--max-tokens-cap", type=whole(1), default=d.max_tokens_cap, help="largest max_tokens a request may ask")
    sv.add_argument("--max-prompt-tokens", type=whole(1), default=d.max_prompt_tokens, help="longest prompt accepted, in tokens")
    sv.add_argument("--max-request-bytes", type=whole(1), default=d.max_request_bytes, help="largest request body accepted, in bytes")
    sv.add_argument("--max-queue", type=whole(1), default=d.max_queue, help="rows that may wait for a place in the batch; beyond it: 429")
    sv.add_argument("--drain-seconds", type=number, default=d.drain_seconds, metavar="SECONDS",
                    help="on SIGTERM or Ctrl-C: stop taking requests (503), let those in flight finish for this long, then cancel them and exit 0")
    sv.add_argument("--profile-update", action="store_true",
                    help="at shutdown, write each guide's record across the answers served into the --profile file (under \"observed\"; "
                    "the weights are not changed)")
    add_decoding_options(sv, "serve")

    from .scorecli import add_score_options

    add_score_options(command("score", "the log-probability of continuations under each method (JSONL in, JSONL out)"))

    prep = command("prepare", "install-time step: convert and cache the models")
    add_models(prep, placement=False)
    prep.add_argument("--backend", default="transformers", choices=BACKENDS,
                      help="what will run them: transformers converts a GGUF file once; llama.cpp runs it as it is (nothing is converted)")
    parser.commands = sub.choices  # name -> parser, for the message on unknown options
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        print(overview(parser.commands))
        return 0
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            raise UsageError(unknown_options(parser.commands[args.command], extra))
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        commands = {"generate": cmd_generate, "demo": cmd_demo, "prepare": cmd_prepare, "eval": cmd_eval,
                    "diagnose": cmd_diagnose, "report": cmd_report, "serve": cmd_serve, "score": cmd_score}
        return commands[args.command](args)
    except BlendinError as exc:
        print(f"Error: {flagged(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# -- paths written: checked before any model loads ------------------------------------------------

def _check_file_target(path: str, flag: str, example: str) -> None:
    """ConfigError naming ``flag`` unless ``path`` can be written as a file: not a folder, in a folder
    that exists and takes new files (tried, not guessed from permissions). Creates nothing."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; name a file, e.g. {flag} {p / example}")
    _check_folder(p.parent, path, flag, create=False)
    if p.exists():
        try:
            with p.open("a"):
                pass
        except OSError as exc:
            raise ConfigError(f"{flag} {path} cannot be written ({exc.strerror or exc})") from None


def _check_dir_target(path: str, flag: str) -> None:
    """ConfigError naming ``flag`` unless ``path`` is a folder that can be written, or can be created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{flag} {path} is a file; {flag} takes a folder (created if missing)")
    _check_folder(p, path, flag, create=True)


def _check_folder(folder: Path, path: str, flag: str, create: bool) -> None:
    """``folder`` takes new files (or, with ``create``, its nearest existing parent does)."""
    here = folder if str(folder) else Path(".")
    while create and not here.exists() and here != here.parent:
        here = here.parent
    if here.exists() and not here.is_dir():
        raise ConfigError(f"{flag} {path}: {here} is a file, not a folder")
    if not here.exists():
        missing = here
        while not missing.parent.exists() and missing != missing.parent:
            missing = missing.parent
        if missing.parent.exists() and not missing.parent.is_dir():
            raise ConfigError(f"{flag} {path}: {missing.parent} is a file, not a folder")
        raise ConfigError(f"{flag} {path}: the folder {here} does not exist; create it first (mkdir -p {here})")
    try:
        fd, probe = tempfile.mkstemp(dir=here, prefix=".blendin-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write in the folder {here} ({exc.strerror or exc})") from None


def _run(config: BlendConfig, prompt: str, as_json: bool, trace_html: str | None = None) -> None:
    from .decoding import generate
    from .pair import load_pair

    pair = load_pair(config)
    result = generate(pair, prompt, config)
    if trace_html:
        from .diagnostics.html import trace_html as render

        with open(trace_html, "w", encoding="utf-8") as f:
            f.write(render(result, prompt=prompt))
        print(f"trace page: {Path(trace_html).resolve()}", file=sys.stderr)
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(result.text.strip())
        print(f"[{result.summary()}]", file=sys.stderr)


def cmd_generate(a) -> int:
    config = config_from_args(a)  # validates before any model loads
    if a.input or a.output:
        return _generate_file(config, a)
    if a.prompt is None:
        raise ConfigError("give a PROMPT (or '-' for stdin), or --input FILE.jsonl --output RESULTS.jsonl")
    prompt = sys.stdin.read() if a.prompt == "-" else a.prompt
    if not prompt.strip():
        raise ConfigError("the prompt is empty: pass the question as text, or '-' and text on stdin")
    if a.trace_html:
        _check_file_target(a.trace_html, "--trace-html", "trace.html")
    _run(config, prompt.strip(), a.json, a.trace_html)
    return 0


def _generate_file(config: BlendConfig, a) -> int:
    from .jsonl import ResultWriter, finished_ids, read_prompts

    if not (a.input and a.output) or a.prompt is not None:
        raise ConfigError("--input and --output go together, without PROMPT: blendin generate --input q.jsonl --output r.jsonl")
    if a.trace_html:
        raise ConfigError("--trace-html draws the page of one answer: give it with PROMPT, not with --input")
    if Path(a.output).resolve() == Path(a.input).resolve():
        raise ConfigError(f"--output {a.output} is the --input file; name another file for the results, e.g. --output results.jsonl")
    _check_file_target(a.output, "--output", "results.jsonl")
    items = read_prompts(a.input)
    done = finished_ids(a.output)  # refuses a file that is not blendin's results
    todo = [item for item in items if item["id"] not in done]
    if done:
        print(f"blendin: {len(items) - len(todo)} of {len(items)} prompts already in {a.output}; doing the other {len(todo)}", file=sys.stderr)
    if not todo:
        return 0
    from .decoding import generate_many
    from .pair import load_pair

    pair = load_pair(config)
    writer = ResultWriter(a.output)
    tokens = interventions = 0
    failed: list[str] = []
    try:
        for n, (i, result) in enumerate(generate_many(pair, todo, config, batch_size=a.batch_size), 1):
            if result.error is not None:  # not written: a rerun of the same command tries it again
                failed.append(str(todo[i]["id"]))
                print(f"[{n}/{len(todo)}] id={todo[i]['id']}: failed: {result.error}", file=sys.stderr)
                continue
            writer.write({"id": todo[i]["id"], **result.to_dict()})
            tokens, interventions = tokens + result.tokens, interventions + result.interventions
            print(f"[{n}/{len(todo)}] id={todo[i]['id']}: {result.summary()}", file=sys.stderr)
    finally:
        writer.close()
    rate = interventions / tokens if tokens else 0.0
    print(f"blendin: {len(todo) - len(failed)} prompts, {tokens} tokens, intervention rate {100 * rate:.1f}% -> {a.output}", file=sys.stderr)
    if failed:
        print(f"blendin: {len(failed)} prompts failed (ids {', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''}); "
              "they are not in the output: run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def cmd_demo(a) -> int:
    from .demo import run_demo

    config = config_from_args(a)  # validates before any model loads
    if a.html:
        _check_file_target(a.html, "--html", "demo.html")
    return run_demo(config, show_alpha=a.show_alpha, html=a.html, as_json=a.json)


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{name} takes a comma list of numbers, got '{text}'") from None
    if not values:
        raise ConfigError(f"--{name} needs at least one number, got '{text}'")
    return values


def _alphas(text: str) -> list[float | None]:
    try:
        values = [alpha_value(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ConfigError(f"--alpha {exc} (in '{text}')") from None
    if not values:
        raise ConfigError(f"--alpha needs at least one value ('auto' or a number in [0, 1]), got '{text}'")
    return values


def _pairs(a) -> list:
    """The --pair specs (``eval.grid.PairSpec``), or [None] for the one pair of --base/--guide."""
    from .eval.grid import parse_pairs

    if a.pair and (a.guide or a.base is not None):
        raise ConfigError("--pair names each pair's models: drop --base and --guide (or drop --pair for one pair)")
    if a.pair and (getattr(a, "base_url", None) or getattr(a, "guide_url", None)):
        raise ConfigError("--base-url/--guide-url serve the one pair of --base/--guide; with --pair, serve a guide "
                          "from a server as MODEL@URL (--pair BASE:MODEL@URL), or drop --pair")
    return parse_pairs(a.pair) if a.pair else [None]


def _models(a, spec) -> argparse.Namespace:
    """``a`` with the models of ``spec`` (a --pair) as --base/--guide; without one, --base or the default."""
    return argparse.Namespace(**{**vars(a), "base": spec.base if spec else a.base or DEFAULT_BASE,
                                 "guide": list(spec.guides) if spec else a.guide})


def eval_config(a, models, task) -> BlendConfig:
    """The configuration ``blendin eval`` runs ``task`` with, before the grid's method, gamma and alpha
    (``runner.grid``) and the task's prompt and stops (``runinfo.task_config``) are applied; ``models``:
    ``a`` with one pair's --base/--guide (``_models``)."""
    return BlendConfig(base=models.base, max_new_tokens=a.max_new_tokens or task.max_new_tokens,
                       temperature=a.temperature, top_p=a.top_p, seed=a.seed, base_remote=_remote(models, "base"),
                       prompt=PromptFormat(base_prompt=a.base_prompt), trace_top=5 if a.trace_html else 0,
                       speculate=a.speculate, on_guide_failure=a.on_guide_failure or "error", repeat_stop=a.repeat_stop,
                       **_guides(models), **_placement(a), **_mitigations(a))


def cmd_eval(a) -> int:
    from .eval.runinfo import check_run
    from .eval.runner import grid
    from .eval.tasks import get_task, load_items

    tasks = [get_task(t.strip()) for t in a.task.split(",") if t.strip()]
    methods = [m.strip() for m in a.method.split(",") if m.strip()]
    if not tasks:
        raise ConfigError(f"--task needs at least one task, got '{a.task}'")
    if not methods:
        raise ConfigError(f"--method needs at least one method ({', '.join(METHODS)}), got '{a.method}'")
    specs = _pairs(a)
    _check_dir_target(a.out, "--out")
    if a.trace_html:
        _check_dir_target(a.trace_html, "--trace-html")
    from .pair import check_pair

    plans = []  # (spec or None, run folder, [(task, configs, judge)]): every pair and task checked before models load
    for spec in specs:
        models = _models(a, spec)
        out = Path(a.out) / spec.label if spec else Path(a.out)
        jobs = []
        for task in tasks:
            base = eval_config(a, models, task)
            _check_profile_task(base, task)
            # grid builds each configuration through BlendConfig, so every combination is checked before models load
            configs = grid(base, methods, _floats(a.gamma, "gamma"), _alphas(a.alpha))
            judge = _judge(a, task)
            check_run(out, task, base, judge)  # a folder made with other settings is refused before models load
            jobs.append((task, configs, judge))
        check_pair(jobs[0][1][0], methods=tuple(methods))  # the models' names, before the items load
        plans.append((spec, out, jobs))
    items = {task.name: load_items(task, a.data, a.limit) for task in tasks}
    from .eval.grid import run_plans

    failed = run_plans(plans, items, Path(a.out), methods=tuple(methods), batch_size=a.batch_size, traces=a.trace_html, progress=sys.stderr,
                       together=a.together, retry_errors=a.retry_errors)
    if failed:
        print(f"blendin: {failed} samples failed to decode and are scored apart (\"error\" in results.jsonl); a rerun decodes "
              "again those a model did not answer (\"unavailable\"); add --retry-errors to decode them all again", file=sys.stderr)
    return 0


def _check_profile_task(config: BlendConfig, task) -> None:
    """A --profile fitted on another task is refused (BlendConfig checks the models and the rule)."""
    why = config.profile.mismatch(config, task=task.name) if config.profile is not None else None
    if why is not None:
        raise ConfigError(f"--profile {config.profile.source} was fitted for another run ({why}); fit one for this task with "
                          f"blendin diagnose --task {task.name} ... --save-profile FILE, or drop --profile")


def _judge(a, task):
    import os

    if not (a.judge_url or a.judge_model):
        if task.scoring == "judge":
            print(f"blendin: {task.name} is scored by a judge model and none was given (--judge-url URL --judge-model NAME): "
                  "writing outputs only, scoring nothing", file=sys.stderr)
        return None
    if task.scoring != "judge":
        raise ConfigError(f"--judge-url/--judge-model score judge tasks (justeval); {task.name} is scored without one: drop them")
    from .eval.judge import Judge

    key = a.judge_api_key or os.environ.get("BLENDIN_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
    return Judge(a.judge_url, a.judge_model, api_key=key, max_tokens=a.judge_max_tokens)


def cmd_diagnose(a) -> int:
    from .eval.tasks import get_task, load_items
    from .pair import check_pair

    task = get_task(a.task)
    specs = _pairs(a)
    if a.save_profile:
        _check_profile_target(a, task, specs)
    methods = ("base", "blendin") if a.mitigations or a.save_profile else ("blendin",)  # the comparison runs the base alone too
    configs = []
    for spec in specs:
        configs.append((spec, _diagnose_config(a, task, _models(a, spec))))
        check_pair(configs[-1][1], methods)  # every pair's models, before anything loads
    items = load_items(task, a.data, a.limit)
    found = []
    for spec, config in configs:
        d, text = _diagnose_pair(a, task, items, config, methods)
        if spec is not None:
            d = {"pair": spec.label, **d}
        found.append(d)
        if not a.json:
            print(text, flush=True)
        if d["warning"]:
            print(f"blendin: warning: {d['warning']}", file=sys.stderr)
    if a.json:
        print(json.dumps(found if a.pair else found[0]), flush=True)
    elif len(found) > 1:
        from .eval.diagnose import pair_ranking

        print(pair_ranking(found, task.name), flush=True)
    return 0 if all(d["samples"] for d in found) else 1  # every prompt of a pair failed: nothing was measured


def _diagnose_config(a, task, models) -> BlendConfig:
    """eval's configuration for the task (prompt format, stop strings, answer length), so that the
    rate measured here is the one eval measures on the same items."""
    from .eval.runinfo import task_config

    return task_config(task, BlendConfig(
        base=models.base, method="blendin", gamma=a.gamma, alpha=a.alpha, max_new_tokens=a.max_new_tokens or task.max_new_tokens,
        prompt=PromptFormat(base_prompt=a.base_prompt), on_guide_failure=getattr(a, "on_guide_failure", None) or "error",
        **_guides(models), **_placement(a)))


def _check_profile_target(a, task, specs) -> None:
    """--save-profile: one pair, a task with gold answers, a folder that exists (before any model loads)."""
    from .eval.profiling import check_profileable

    check_profileable(task)
    if len(specs) > 1:
        raise ConfigError("--save-profile fits one pair's profile: give one --pair (or --base/--guide), and run diagnose once per pair")
    if not Path(a.save_profile).expanduser().resolve().parent.is_dir():
        raise ConfigError(f"--save-profile {a.save_profile}: its folder does not exist; create it, or name a file in an existing folder")


def _diagnose_pair(a, task, items, config: BlendConfig, methods) -> tuple[dict, str]:
    """One pair's diagnosis (and, unless --plain-only, its comparison of mitigations; with
    --save-profile, the profile's fit instead) and its text."""
    from .eval.diagnose import diagnose_pair
    from .pair import load_pair

    pair = load_pair(config, methods)
    settings = {k: getattr(a, k) for k in ("max_intervention_rate", "agreement_top_k", "retire_below", "retire_after")}
    show = None if a.json else lambda text: print(text, flush=True)
    if a.save_profile:
        found = _fit_profile(a, pair, task, items, config, show)
    else:
        found = diagnose_pair(pair, task, items, config, batch_size=a.batch_size, threshold=a.threshold,
                              settings=settings if a.mitigations else None, show=show, progress=sys.stderr)
    del pair
    gc.collect()  # one pair's weights leave before the next pair's load
    return found


def _fit_profile(a, pair, task, items, config: BlendConfig, show) -> tuple[dict, str]:
    """diagnose's plain check and the profile's fit on the same sample; the profile written to --save-profile."""
    from .eval.diagnose import diagnose_pair
    from .eval.profiling import fit_profile, profile_text

    profile, runs = fit_profile(pair, task, items, config, batch_size=a.batch_size, progress=sys.stderr)
    plain = runs["blend 0"] if len(config.guides) == 1 else None  # one guide: its blend is the plain method
    d, text = diagnose_pair(pair, task, items, config, batch_size=a.batch_size, threshold=a.threshold, show=None,
                            progress=sys.stderr, plain=plain)
    path = profile.save(Path(a.save_profile).expanduser())
    d["profile"] = profile.to_dict()
    return d, text + "\n" + profile_text(profile, path)


def cmd_report(a) -> int:
    from .diagnostics.plots import report
    from .eval.compare import DEFAULT_COMPARISONS

    _check_dir_target(a.out, "--out")
    comparisons = DEFAULT_COMPARISONS
    if a.compare:
        comparisons = [tuple(c.split(":")) for c in a.compare]
        for text, c in zip(a.compare, comparisons):
            if len(c) != 2 or not all(m in METHODS for m in c):
                raise ConfigError(f"--compare {text}: write A:B with two of {', '.join(METHODS)}, e.g. --compare blendin:switch")
    for path in report(a.runs, a.out, comparisons, keep_rows=a.keep_rows):
        print(path)
    return 0


def cmd_serve(a) -> int:
    import os

    from .server import serve
    from .server.settings import ServeSettings, bindable

    config = config_from_args(a)  # the numbers were checked as the arguments were read (whole)
    port = bindable(a.host, a.port)  # before the models load; --port 0 becomes the free port found
    settings = ServeSettings(host=a.host, port=port, api_key=a.server_api_key or os.environ.get("BLENDIN_SERVE_API_KEY") or None,
                             model_name=a.served_model_name, batch_size=a.batch_size, max_tokens_cap=a.max_tokens_cap,
                             max_prompt_tokens=a.max_prompt_tokens, max_request_bytes=a.max_request_bytes, max_queue=a.max_queue,
                             profile_update=a.profile_update, drain_seconds=a.drain_seconds)
    if a.profile_update and config.profile is None:  # before the models load
        raise ConfigError("--profile-update writes each guide's record into the --profile file: give --profile FILE too")
    serve(config, settings)
    return 0


def cmd_score(a) -> int:
    from .scorecli import cmd_score as score

    return score(a, BlendConfig(base=a.base, gamma=a.gamma, alpha=a.alpha, **_guides(a), **_placement(a), **_mitigations(a)))


def cmd_prepare(a) -> int:
    from .models import prepare

    for spec in (a.base, *(a.guide or [DEFAULT_GUIDE])):
        print(f"{spec}: ready at {prepare(spec, a.backend)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
