"""The ``blendin`` command: thin wrappers over ``BlendConfig``, ``load_pair`` and ``generate``.

    blendin generate "What is 12 * 7?"                 # BlendIn on the embedded pair
    blendin generate --method nudging --json - < q.txt
    blendin generate --input prompts.jsonl --output results.jsonl --batch-size 8
    blendin demo                                       # a worked example on the embedded pair
    blendin prepare                                    # convert and cache the embedded pair
    blendin eval --task gsm8k --data ../shared/data/gsm8k/test.jsonl --limit 20 --method base,blendin --out runs/g
    blendin diagnose --task gsm8k --data ../shared/data/gsm8k/test.jsonl
    blendin serve --port 8000                           # OpenAI-compatible API on 127.0.0.1
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from .config import DEFAULT_BASE, DEFAULT_GUIDE, METHODS, BlendConfig, PromptFormat, RemoteSpec, parse_alpha
from .errors import BlendinError, ConfigError

DEMO_QUESTION = (
    "A baker makes 24 muffins in the morning and 18 in the afternoon. "
    "She sells 30 of them. How many muffins are left?"
)


def _add_decoding_options(p: argparse.ArgumentParser, key_flag: str = "--api-key") -> None:
    d = BlendConfig()
    p.add_argument("--base", default=DEFAULT_BASE, help=f"base model: embedded name, GGUF file, folder or hub id (default {DEFAULT_BASE})")
    p.add_argument("--guide", default=DEFAULT_GUIDE, help=f"guide model, as --base (default {DEFAULT_GUIDE})")
    p.add_argument("--method", default=d.method, help=f"{' | '.join(METHODS)} (default {d.method})")
    p.add_argument("--gamma", type=float, default=d.gamma, help="the base decides alone when its top-1 probability is >= gamma (default 0.4)")
    p.add_argument("--alpha", default="auto", help="the guide's weight: 'auto' (BlendIn's adaptive alpha) or a number in [0, 1]")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    p.add_argument("--temperature", type=float, default=d.temperature, help="0 is greedy (default)")
    p.add_argument("--top-p", type=float, default=d.top_p)
    p.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    p.add_argument("--stop", action="append", default=[], help="stop before this text (repeatable)")
    f = PromptFormat()
    p.add_argument("--system", default=f.system, help="system line for both models")
    p.add_argument("--question-prefix", default=f.question_prefix, help="put before the question in the base's prompt")
    p.add_argument("--answer-cue", default=f.answer_cue, help="ends the base's prompt")
    p.add_argument("--base-prompt", default=f.base_prompt, help="plain (default: a pretrained base) or chat "
                   "(the base reads its own chat template too, for an instruction-tuned base)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every step")
    for role in ("base", "guide"):
        p.add_argument(f"--{role}-url", help=f"serve the {role} from this OpenAI-compatible server (--{role} then names its tokenizer)")
        p.add_argument(f"--{role}-model", help=f"the {role}'s model name on that server")
    p.add_argument(key_flag, dest="api_key", default=None, help="for the remote models' servers (default: $BLENDIN_API_KEY or $OPENAI_API_KEY)")
    p.add_argument("--top-k", type=int, default=20, help="logprobs asked from servers per position (default 20)")
    p.add_argument("--chunk", type=int, default=8, help="the most greedy tokens asked from a server per request (1 = one per token)")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once to a server, with --input (default 8)")


def config_from_args(a: argparse.Namespace) -> BlendConfig:
    return BlendConfig(
        base=a.base, guide=a.guide, method=a.method, gamma=a.gamma, alpha=parse_alpha(a.alpha),
        max_new_tokens=a.max_new_tokens, temperature=a.temperature, top_p=a.top_p, seed=a.seed,
        stop=tuple(a.stop), prompt=PromptFormat(a.system, a.question_prefix, a.answer_cue, a.base_prompt),
        base_remote=_remote(a, "base"), guide_remote=_remote(a, "guide"),
        trace_top=5 if getattr(a, "trace_html", None) else 0,
    )


def _remote(a: argparse.Namespace, role: str):
    url, model = getattr(a, f"{role}_url"), getattr(a, f"{role}_model")
    if url is None and model is None:
        return None
    if not url or not model:
        raise ConfigError(f"--{role}-url and --{role}-model go together: the server's address and the model name it serves")
    return RemoteSpec(url, model, api_key=a.api_key, top_k=a.top_k, chunk=a.chunk, concurrency=a.concurrency)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blendin", description="Guided decoding by probabilistic model blending (BlendIn).")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="answer one prompt, or a JSONL file of prompts")
    gen.add_argument("prompt", nargs="?", help="the question, or '-' to read it from stdin")
    gen.add_argument("--input", help="JSONL file, one {\"prompt\", \"id\"?, \"system\"?} per line (instead of PROMPT)")
    gen.add_argument("--output", help="JSONL results file for --input; a re-run skips ids already in it")
    gen.add_argument("--batch-size", type=int, default=16, help="prompts decoded together with --input (default 16: about 6x the speed of one at a time on 2 cores)")
    gen.add_argument("--trace-html", help="also write a page showing who chose each token (hover a token for details)")
    _add_decoding_options(gen)
    demo = sub.add_parser("demo", help="answer a worked example on the embedded pair")
    _add_decoding_options(demo)
    demo.set_defaults(max_new_tokens=128)
    ev = sub.add_parser("eval", help="score methods on a benchmark task; results.jsonl + summary.json in --out")
    ev.add_argument("--task", required=True, help="gsm8k | arc_challenge | mmlu | truthfulqa | xstest | justeval")
    ev.add_argument("--data", help="the task's JSONL file (schema of shared/data) or a folder laid out like it; default: the Hugging Face hub")
    ev.add_argument("--limit", type=int, help="the first N items")
    ev.add_argument("--method", default="blendin", help="comma list, e.g. base,guide,switch,nudging,blendin")
    ev.add_argument("--gamma", default="0.4", help="comma list, e.g. 0.3,0.4")
    ev.add_argument("--alpha", default="auto", help="comma list of 'auto' or numbers")
    ev.add_argument("--max-new-tokens", type=int, help="default: the task's (gsm8k 256, multiple choice 64)")
    ev.add_argument("--batch-size", type=int, default=16)
    ev.add_argument("--out", required=True, help="run folder; a re-run with the same folder resumes")
    ev.add_argument("--base", default=DEFAULT_BASE)
    ev.add_argument("--guide", default=DEFAULT_GUIDE)
    ev.add_argument("--base-prompt", default="plain", help="plain (default) or chat: the base reads its own chat template too")
    ev.add_argument("--judge-url", help="justeval: the judge's OpenAI-compatible server (e.g. http://127.0.0.1:8001/v1)")
    ev.add_argument("--judge-model", help="justeval: the judge's model name on that server")
    ev.add_argument("--judge-api-key", default=None, help="default: $BLENDIN_JUDGE_API_KEY or $OPENAI_API_KEY")
    ev.add_argument("--judge-max-tokens", type=int, default=512, help="the judge's reply length (default 512)")
    ev.add_argument("--trace-html", metavar="DIR", help="also write one trace page per sample into DIR")
    dg = sub.add_parser("diagnose", help="pair health check: intervention rate on a small sample, and a verdict")
    dg.add_argument("--task", default="gsm8k")
    dg.add_argument("--data", help="as for eval")
    dg.add_argument("--n", type=int, default=20, help="prompts in the sample (default 20)")
    dg.add_argument("--threshold", type=float, default=0.2, help="intervention rate above which guidance looks unreliable")
    dg.add_argument("--gamma", type=float, default=0.4)
    dg.add_argument("--alpha", default="auto")
    dg.add_argument("--max-new-tokens", type=int, default=128)
    dg.add_argument("--batch-size", type=int, default=16)
    dg.add_argument("--base", default=DEFAULT_BASE)
    dg.add_argument("--guide", default=DEFAULT_GUIDE)
    dg.add_argument("--base-prompt", default="plain", help="plain (default) or chat: the base reads its own chat template too")
    dg.add_argument("--json", action="store_true")
    rep = sub.add_parser("report", help="PNG plots from eval run folders")
    rep.add_argument("runs", nargs="+", help="folders written by blendin eval --out")
    rep.add_argument("--out", default="report", help="folder for the PNG files (default ./report)")
    sv = sub.add_parser("serve", help="an OpenAI-compatible API (/v1/completions, /v1/chat/completions) over the pair")
    from .server.settings import ServeSettings

    d = ServeSettings()
    sv.add_argument("--host", default=d.host, help="address to bind (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, default=d.port)
    sv.add_argument("--api-key", dest="server_api_key", default=None, help="clients must send 'Authorization: Bearer KEY' (default: $BLENDIN_SERVE_API_KEY; unset = no key)")
    sv.add_argument("--served-model-name", default=d.model_name, help=f"the model id clients ask for (default {d.model_name})")
    sv.add_argument("--batch-size", type=int, default=d.batch_size, help="rows decoded together (default 16)")
    sv.add_argument("--max-tokens-cap", type=int, default=d.max_tokens_cap, help="largest max_tokens a request may ask")
    sv.add_argument("--max-prompt-tokens", type=int, default=d.max_prompt_tokens, help="longest prompt accepted, in tokens")
    sv.add_argument("--max-request-bytes", type=int, default=d.max_request_bytes, help="largest request body accepted")
    sv.add_argument("--max-queue", type=int, default=d.max_queue, help="rows that may wait for a place in the batch; beyond it: 429")
    _add_decoding_options(sv, key_flag="--upstream-api-key")
    prep = sub.add_parser("prepare", help="install-time step: convert and cache the models")
    prep.add_argument("--base", default=DEFAULT_BASE)
    prep.add_argument("--guide", default=DEFAULT_GUIDE)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"generate": cmd_generate, "demo": cmd_demo, "prepare": cmd_prepare, "eval": cmd_eval,
                    "diagnose": cmd_diagnose, "report": cmd_report, "serve": cmd_serve}
        return commands[args.command](args)
    except BlendinError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run(config: BlendConfig, prompt: str, as_json: bool, trace_html: str | None = None) -> None:
    from .decoding import generate
    from .pair import load_pair

    pair = load_pair(config)
    result = generate(pair, prompt, config)
    if trace_html:
        from .diagnostics.html import trace_html as render

        with open(trace_html, "w", encoding="utf-8") as f:
            f.write(render(result))
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
    _run(config, prompt.strip(), a.json, a.trace_html)
    return 0


def _generate_file(config: BlendConfig, a) -> int:
    from .jsonl import ResultWriter, finished_ids, read_prompts

    if not (a.input and a.output) or a.prompt is not None:
        raise ConfigError("--input and --output go together, without PROMPT: blendin generate --input q.jsonl --output r.jsonl")
    if a.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {a.batch_size}")
    items = read_prompts(a.input)
    done = finished_ids(a.output)
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
    config = config_from_args(a)
    if not a.json:
        print(f"Base {config.base}, guided by {config.guide}; method {config.method}, gamma {config.gamma}, alpha {config.alpha_label}")
        print(f"Question: {DEMO_QUESTION}\nAnswer:", flush=True)
    _run(config, DEMO_QUESTION, a.json)
    return 0


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--{name} takes a comma list of numbers, got '{text}'") from None


def cmd_eval(a) -> int:
    from .eval.runinfo import check_run
    from .eval.runner import grid, markdown, run_eval
    from .eval.tasks import get_task, load_items

    task = get_task(a.task)
    methods = [m.strip() for m in a.method.split(",") if m.strip()]
    base = BlendConfig(base=a.base, guide=a.guide, max_new_tokens=a.max_new_tokens or task.max_new_tokens,
                       prompt=PromptFormat(base_prompt=a.base_prompt), trace_top=5 if a.trace_html else 0)
    # grid builds each configuration through BlendConfig, so every combination is checked before models load
    configs = grid(base, methods, _floats(a.gamma, "gamma"), [parse_alpha(x) for x in a.alpha.split(",")])
    judge = _judge(a, task)
    check_run(a.out, task, base, judge)  # a folder made with other settings is refused before models load
    items = load_items(task, a.data, a.limit)
    from .pair import load_pair

    pair = load_pair(base, methods=tuple(methods))
    summary = run_eval(pair, task, items, configs, a.out, batch_size=a.batch_size, judge=judge, traces=a.trace_html)
    print(markdown(summary))
    failed = sum(s.get("errors", 0) for s in summary)
    if failed:
        print(f"blendin: {failed} samples failed to decode and are scored apart (\"error\" in {a.out}/results.jsonl); "
              "a rerun skips them: delete their rows to try them again", file=sys.stderr)
    return 0


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
    from .decoding import generate_many
    from .eval.runner import diagnose, diagnosis_text
    from .eval.tasks import get_task, load_items
    from .pair import load_pair

    task = get_task(a.task)
    config = BlendConfig(base=a.base, guide=a.guide, method="blendin", gamma=a.gamma, alpha=parse_alpha(a.alpha),
                         max_new_tokens=a.max_new_tokens, prompt=replace(task.prompt, base_prompt=a.base_prompt))
    items = load_items(task, a.data, a.n)
    pair = load_pair(config)
    results = [r for _, r in generate_many(pair, [task.render(it) for it in items], config, batch_size=a.batch_size)]
    d = diagnose(results, threshold=a.threshold, gamma=a.gamma, fixed_alpha=config.alpha is not None)
    print(json.dumps(d) if a.json else diagnosis_text(d, f"{a.base} guided by {a.guide}", task.name, a.gamma))
    return 0 if d["samples"] else 1  # every prompt failed: nothing was measured


def cmd_report(a) -> int:
    from .diagnostics.plots import report

    for path in report(a.runs, a.out):
        print(path)
    return 0


def cmd_serve(a) -> int:
    import os

    from .server import serve
    from .server.settings import ServeSettings

    config = config_from_args(a)
    for flag in ("batch_size", "max_tokens_cap", "max_prompt_tokens", "max_request_bytes", "max_queue"):
        if getattr(a, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(a, flag)}")
    if not 0 <= a.port < 65536:
        raise ConfigError(f"--port must be in 0..65535, got {a.port}")
    settings = ServeSettings(host=a.host, port=a.port, api_key=a.server_api_key or os.environ.get("BLENDIN_SERVE_API_KEY") or None,
                             model_name=a.served_model_name, batch_size=a.batch_size, max_tokens_cap=a.max_tokens_cap,
                             max_prompt_tokens=a.max_prompt_tokens, max_request_bytes=a.max_request_bytes, max_queue=a.max_queue)
    serve(config, settings)
    return 0


def cmd_prepare(a) -> int:
    from .models import prepare

    for spec in (a.base, a.guide):
        print(f"{spec}: ready at {prepare(spec)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
