"""argparse in blendin's words: one line per mistake naming the flag, every option with its default,
the value types the CLI's options share (numbers, fractions, whole numbers in a range, alpha), and
the option groups several commands share (the models, the mitigations, the decoding options).

    parser = Parser(prog="blendin", formatter_class=Help)
    parser.add_argument("--gamma", type=fraction, default=0.4, help="...")   # '--gamma must be a number in [0, 1], got 2'
"""

from __future__ import annotations

import argparse
import math
import re

from .config import BACKENDS, DEFAULT_BASE, DEFAULT_GUIDE, METHODS, ON_GUIDE_FAILURE, BlendConfig, PromptFormat, RemoteSpec, did_you_mean

COMMANDS = ("generate", "demo", "eval", "diagnose", "report", "serve", "prepare")
# one example per command, for ``blendin`` with no arguments (``overview``), in the order a newcomer meets them
EXAMPLES = {
    "demo": "blendin demo",
    "generate": 'blendin generate "A shop sells pens at 3 dollars each. How much do 7 pens cost?"',
    "serve": "blendin serve --port 8000          # then open http://127.0.0.1:8000/",
    "diagnose": "blendin diagnose --task arc_challenge --data ../shared/data --limit 20",
    "eval": "blendin eval --task gsm8k --data ../shared/data --limit 20 --method base,blendin --out runs/gsm8k",
    "report": "blendin report runs/gsm8k --out report/",
    "score": "blendin score --input pairs.jsonl --method base,blendin",
    "prepare": "blendin prepare",
}


def overview(commands: dict) -> str:
    """What ``blendin`` alone prints: each command, what it does, and one example (``commands``: name -> parser)."""
    lines = ["blendin: guided decoding by probabilistic model blending (BlendIn). Commands, each with an example:", ""]
    for name, example in EXAMPLES.items():
        lines += [f"  {name:9} {commands[name].description.split(';')[0]}", f"            $ {example}"]
    return "\n".join(lines + ["", "blendin COMMAND --help lists a command's options; blendin --version prints the version."])


class UsageError(Exception):
    """A mistake in the command line, in one line; ``main`` prints it as blendin's other errors (exit 2)."""


class Parser(argparse.ArgumentParser):
    """Reports a mistake as one line naming the flag, not as the usage text."""

    def error(self, message: str):
        raise UsageError(usage_error(message, self.prog))


class Help(argparse.HelpFormatter):
    """Every option's help ends with its default ('none' for an option unset by default), unless it
    says it already (or the option is a switch)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if not action.option_strings or action.nargs == 0 or default is argparse.SUPPRESS or "default" in text:
            return text
        if default is None or default == []:
            default = "none"
        elif isinstance(default, str) and (not default or default != default.strip() or "\n" in default):
            default = repr(default)
        return f"{text} (default: {str(default).replace('%', '%%')})"


def usage_error(message: str, prog: str) -> str:
    """argparse's message as one line naming the flag ('--gamma must be a number, got 'abc'')."""
    m = re.match(r"argument (\S+): (.*)", message, re.S)
    if m:
        name, rest = m.group(1).split("/")[0], m.group(2)
        choice = re.match(r"invalid choice: '([^']*)'", rest)
        if name == "COMMAND" and choice:
            return f"unknown command '{choice.group(1)}'{did_you_mean(choice.group(1), COMMANDS)}; choose one of: {', '.join(COMMANDS)}"
        if rest.startswith("must "):
            return f"{name} {rest}"
        if rest.startswith("expected "):
            return f"{name} needs a value ({prog} --help)"
        return f"{name}: {rest} ({prog} --help)"
    required = "the following arguments are required: "
    if message.startswith(required):
        names = message[len(required):]
        if names == "COMMAND":
            return f"give a command: {', '.join(COMMANDS)} (blendin --help; blendin COMMAND --help)"
        return f"{prog} needs {names} ({prog} --help)"
    return f"{message} ({prog} --help)"


def unknown_options(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """The message for arguments no option takes, with the nearest option for a misspelt one."""
    flags = [o for o, action in parser._option_string_actions.items() if action.help is not argparse.SUPPRESS]
    hint = next((did_you_mean(x.split("=")[0], flags) for x in extra if x.startswith("--")), "")
    return f"unrecognized arguments: {' '.join(extra)}{hint} ({parser.prog} --help lists the options)"


def number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got '{text}'") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got '{text}'")
    return x


def fraction(text: str) -> float:
    x = number(text)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return x


def whole(lo: int, hi: int | None = None):
    """A type for whole-number options, lo..hi: 'must be a whole number >= 1, got 0' otherwise."""
    bounds = f">= {lo}" if hi is None else f"in {lo}..{hi}"

    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got '{text}'") from None
        if n < lo or (hi is not None and n > hi):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, got {n}")
        return n

    return parse


def alpha_value(text: str) -> float | None:
    """'auto' -> None (BlendIn's adaptive alpha), else a number in [0, 1]; ValueError with the message."""
    if text.strip().lower() == "auto":
        return None
    try:
        x = float(text)
    except ValueError:
        x = None
    if x is None or not 0 <= x <= 1:
        shown = text if x is not None else f"'{text}'"
        raise ValueError(f"must be a number in [0, 1] or 'auto' (BlendIn's adaptive alpha), got {shown}")
    return x


def alpha(text: str) -> float | None:
    try:
        return alpha_value(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# config fields named by library messages, as a CLI user knows them
FIELD_FLAGS = {"gamma": "--gamma", "alpha": "--alpha", "max_new_tokens": "--max-new-tokens", "temperature": "--temperature",
                "top_p": "--top-p", "seed": "--seed", "stop strings": "--stop", "top_k": "--top-k", "chunk": "--chunk",
                "concurrency": "--concurrency", "batch_size": "--batch-size",
               "device": "--device", "dtype": "--dtype", "guide_device": "--guide-device", "guide_dtype": "--guide-dtype",
               "max_intervention_rate": "--max-intervention-rate", "agreement_top_k": "--agreement-top-k", "retire_below": "--retire-below",
               "retire_after": "--retire-after", "capability_gap": "--capability-gap", "threads": "--threads",
               "context": "--context"}


def flagged(message: str) -> str:
    """A library message in the CLI's words: 'max_new_tokens must ...' -> '--max-new-tokens must ...'."""
    for field, flag in FIELD_FLAGS.items():
        if message.startswith(field + " "):
            return flag + message[len(field):]
    return message


# -- option groups that several commands share ------------------------------------------------------

SEED_MAX = 2**64 - 1  # torch's generators take at most 64 bits (as the server's seed field)


def add_models(p: argparse.ArgumentParser, placement: bool = True) -> None:
    p.add_argument("--base", default=DEFAULT_BASE, metavar="MODEL", help="the base model: an embedded name, a GGUF file, a model folder or a Hugging Face id")
    p.add_argument("--guide", action="append", default=None, metavar="MODEL",
                   help=f"the guide model, as --base; give it again for several guides (blended under blendin and switch); "
                   f"MODEL@URL serves one from an OpenAI-compatible server under that model name (default: {DEFAULT_GUIDE})")
    if placement:
        p.add_argument("--device", default="auto", help="where local models run: auto (a GPU where there is one), cpu, cuda, cuda:N")
        p.add_argument("--dtype", default="auto", help="their precision: auto (bfloat16 on a GPU, float32 on the CPU), float32, bfloat16, float16")
        p.add_argument("--guide-device", default=None, metavar="DEVICE", help="the guide's device, where it differs from --device (default: as --device)")
        p.add_argument("--guide-dtype", default=None, metavar="DTYPE", help="the guide's dtype, where it differs from --dtype (default: as --dtype)")
        p.add_argument("--backend", default="transformers", choices=BACKENDS,
                       help="what runs local models: transformers (float32, or half precision on a GPU) or llama.cpp "
                       "(a GGUF file as it is, quantized, on the CPU; several times faster there)")
        p.add_argument("--guide-backend", default=None, choices=BACKENDS, help="the guides' backend, where it differs from --backend")
        p.add_argument("--threads", type=int, default=None, metavar="N", help="llama.cpp's CPU threads (default: the machine's physical cores)")
        p.add_argument("--context", type=int, default=None, metavar="CELLS",
                       help="llama.cpp's cache cells per row: prompt + --max-new-tokens must fit (default: 4096, or less where the model was trained shorter)")



def add_mitigations(p: argparse.ArgumentParser) -> None:
    """The mitigations of unreliable guidance, each off by default (see blendin.mitigations)."""
    p.add_argument("--max-intervention-rate", type=fraction, default=None, metavar="RATE",
                   help="intervention budget: the base decides alone while the rate so far is above RATE (the reference uses 0.15)")
    p.add_argument("--agreement-top-k", type=whole(1), default=None, metavar="K",
                   help="agreement filter: a guide counts only when its top token is among the base's top K (the reference uses 5)")
    p.add_argument("--reliability", action="store_true", help="scale each guide's weight by its reliability shown so far in the answer")
    p.add_argument("--retire-below", type=fraction, default=None, metavar="FLOOR",
                   help="stop consulting a guide whose reliability is below FLOOR after --retire-after consultations")
    p.add_argument("--retire-after", type=whole(1), default=BlendConfig.retire_after, metavar="N", help="consultations before a guide may retire")
    p.add_argument("--capability-gap", type=number, default=None, metavar="GAP",
                   help="adaptive gamma: the guide's score minus the base's (blendin diagnose measures it); "
                   "gamma becomes min(gamma * (1 + 0.5 * GAP), max(gamma, 0.6))")
    p.add_argument("--profile", default=None, metavar="FILE",
                   help="a reliability profile (blendin diagnose --save-profile writes one): each guide's weight times the "
                   "reliability its sample proved; a guide it weighs 0 is not consulted")



def add_speculate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speculate", default=BlendConfig.speculate, metavar="MODE",
                   help="off | guide | lookup | auto: draft tokens for the base to read in one pass (the guide, one tokenizer; "
                   "prompt lookup, any pair; auto: the guide while its drafts pay by the pass costs measured here, else lookup while "
                   "its do, else none). "
                   "The same tokens as off, fewer base passes")


def add_decoding_options(p: argparse.ArgumentParser, command: str) -> None:
    """The options of generate, demo and serve (for serve, the defaults of requests that leave them out).

    ``command`` picks the ones that apply: --json prints a result (not serve's); --concurrency matters
    for many prompts at once (generate's --input, serve's requests), not for demo's one."""
    d, f = BlendConfig(), PromptFormat()
    add_models(p)
    p.add_argument("--method", default=d.method, help=" | ".join(METHODS))
    add_mitigations(p)
    add_speculate(p)
    p.add_argument("--gamma", type=number, default=d.gamma, help="the base decides alone when its top-1 probability is >= gamma")
    p.add_argument("--alpha", type=alpha, default="auto", help="the guide's weight: 'auto' (BlendIn's adaptive alpha) or a number in [0, 1]")
    p.add_argument("--max-new-tokens", type=whole(1), default=d.max_new_tokens, help="the most tokens to generate"
                   + (" (a request's max_tokens, up to --max-tokens-cap, overrides it)" if command == "serve" else ""))
    add_sampling(p)
    p.add_argument("--stop", action="append", default=[], metavar="TEXT", help="stop before this text (repeatable)")
    p.add_argument("--no-turn-stop", dest="turn_stop", action="store_false",
                   help="write on past the base's next turn (by default the answer ends at a line starting with the question prefix, '\\nQuestion:')")
    add_repeat_stop(p, default=command == "demo")
    f = PromptFormat()
    p.add_argument("--system", default=f.system, help="system line for both models")
    p.add_argument("--question-prefix", default=f.question_prefix, help="put before the question in the base's prompt")
    p.add_argument("--answer-cue", default=f.answer_cue, help="ends the base's prompt")
    p.add_argument("--base-prompt", default=f.base_prompt, help="plain, for a pretrained base, or chat: the base reads "
                   "its own chat template too, for an instruction-tuned base")
    if command != "serve":
        p.add_argument("--json", action="store_true", help="print one JSON object with every step")
    add_remote(p, command)


def add_repeat_stop(p: argparse.ArgumentParser, default: bool = False) -> None:
    """--repeat-stop (generate, eval, serve: off by default, the method's answer as it comes) or, where
    it is on (demo), --no-repeat-stop."""
    if default:
        p.add_argument("--no-repeat-stop", dest="repeat_stop", action="store_false",
                       help="let an answer run on when it repeats itself (by default it stops once it says the same thing twice in a row)")
    else:
        p.add_argument("--repeat-stop", action="store_true",
                       help="stop an answer once it says the same thing twice in a row (stop_reason 'repeat'); by default answers run on")


def add_sampling(p: argparse.ArgumentParser) -> None:
    """--temperature, --top-p and --seed (greedy by default): generate's, demo's, serve's and eval's."""
    d = BlendConfig()
    p.add_argument("--temperature", type=number, default=d.temperature, help="0 is greedy; above 0 samples")
    p.add_argument("--top-p", type=number, default=d.top_p, help="when sampling, draw from the most likely tokens holding this much probability")
    p.add_argument("--seed", type=whole(0, SEED_MAX), default=None, help="makes sampling reproducible (default: none, a new draw each run)")


def add_remote(p: argparse.ArgumentParser, command: str) -> None:
    """The remote models' options (``RemoteSpec``): --base-url/--base-model, --guide-url/--guide-model,
    the key, --top-k, --chunk and (but for demo's one prompt) --concurrency. serve names its upstream
    key --upstream-api-key, since its own --api-key is the key its clients send."""
    key_flag = "--upstream-api-key" if command == "serve" else "--api-key"
    for role in ("base", "guide"):
        p.add_argument(f"--{role}-url", metavar="URL", help=f"serve the {role} from this OpenAI-compatible server (--{role} then names its tokenizer; "
                       "default: none, it runs here)")
        p.add_argument(f"--{role}-model", metavar="NAME", help=f"the {role}'s model name on that server (with --{role}-url)")
    p.add_argument(key_flag, dest="api_key", default=None, metavar="KEY", help="for the remote models' servers (default: $BLENDIN_API_KEY or $OPENAI_API_KEY)")
    p.add_argument("--top-k", type=whole(1), default=RemoteSpec.top_k, help="logprobs asked from servers per position")
    p.add_argument("--chunk", type=whole(1), default=RemoteSpec.chunk, help="the most greedy tokens asked from a server per request; 1 asks for one token at a time")
    if command != "demo":
        p.add_argument("--concurrency", type=whole(1), default=RemoteSpec.concurrency,
                       help="requests in flight at once to each server" + (", with --input" if command == "generate" else ""))
    p.add_argument("--guide-timeout", type=number, default=RemoteSpec.timeout, metavar="SECONDS",
                   help="how long a guide's server may take to answer one request")
    p.add_argument("--guide-retries", type=whole(0), default=RemoteSpec.retries, metavar="N",
                   help="tries after the first (with backoff) before a guide's server counts as down")
    p.add_argument("--on-guide-failure", choices=ON_GUIDE_FAILURE, default=None,
                   help="a guide that stops answering: degrade (the base decides alone where it would have guided; the answer says so) "
                   "or error (the answer fails); default: " + ("error, so an unguided answer is never scored as the method's"
                                                              if command == "eval" else "degrade"))


def add_eval_options(ev: argparse.ArgumentParser, task_tokens: str) -> None:
    """``blendin eval``'s options (``task_tokens``: each task's own answer length, for the help)."""
    from .eval.tasks import TASKS

    ev.add_argument("--task", required=True, help="comma list of " + " | ".join(TASKS))
    ev.add_argument("--data", help="the task's JSONL file (schema of shared/data) or a folder laid out like it (default: the Hugging Face hub)")
    ev.add_argument("--limit", type=whole(1), metavar="N", help="evaluate the first N items (default: all)")
    ev.add_argument("--method", default="blendin", help="comma list of base, guide, switch, nudging, blendin")
    ev.add_argument("--gamma", default="0.4", help="comma list, e.g. 0.3,0.4")
    ev.add_argument("--alpha", default="auto", help="comma list of 'auto' (BlendIn's adaptive alpha) or numbers in [0, 1]")
    ev.add_argument("--max-new-tokens", type=whole(1), help=f"the most tokens per answer (default: the task's own: {task_tokens})")
    ev.add_argument("--batch-size", type=whole(1), default=16, help="prompts decoded together")
    ev.add_argument("--together", action="store_true",
                    help="decode all configurations of a task in one batch, item by item (fuller batches; an interrupted run "
                    "has every configuration at the same items), instead of one configuration after another")
    ev.add_argument("--retry-errors", action="store_true",
                    help="decode again the samples an earlier run into --out recorded as failed (by default they count as done)")
    ev.add_argument("--out", required=True, metavar="DIR", help="run folder (created if missing); a re-run with the same folder resumes")
    add_models(ev)
    ev.set_defaults(base=None)  # None: not given (the default pair's base), so that --pair can refuse a --base given with it
    ev.add_argument("--pair", action="append", default=None, metavar="BASE:GUIDE",
                    help="a pair of the grid (repeatable; BASE:GUIDE1,GUIDE2 for several guides; instead of --base/--guide): "
                    "each pair's results go to --out/BASE+GUIDE/, and --out/summary.json gathers them")
    add_mitigations(ev)
    add_speculate(ev)
    add_sampling(ev)  # greedy by default; sampled answers are recorded in run.json as any setting that changes them
    add_repeat_stop(ev)  # recorded in run.json: it can change an answer
    add_remote(ev, "eval")
    ev.add_argument("--base-prompt", default="plain", help="plain or chat: the base reads its own chat template too")
    ev.add_argument("--judge-url", help="justeval: the judge's OpenAI-compatible server, e.g. http://127.0.0.1:8001/v1 "
                    "(default: none, outputs are written and not scored)")
    ev.add_argument("--judge-model", help="justeval: the judge's model name on that server (with --judge-url)")
    ev.add_argument("--judge-api-key", default=None, metavar="KEY", help="the judge server's key (default: $BLENDIN_JUDGE_API_KEY or $OPENAI_API_KEY)")
    ev.add_argument("--judge-max-tokens", type=whole(1), default=512, help="the judge's reply length")
    ev.add_argument("--trace-html", metavar="DIR", help="also write one trace page per sample into DIR (default: none)")


def add_diagnose_options(dg: argparse.ArgumentParser, task_tokens: str) -> None:
    """``blendin diagnose``'s options (``task_tokens`` as for eval)."""
    from .eval.diagnose import DEFAULTS as TRIED, MIN_SAMPLE as MIN_DIAGNOSE_SAMPLE

    dg.add_argument("--task", default="gsm8k", help="the task whose first items are the sample, decoded as eval decodes them")
    dg.add_argument("--data", help="as for eval (default: the Hugging Face hub)")
    dg.add_argument("--limit", type=whole(1), default=MIN_DIAGNOSE_SAMPLE, metavar="N",
                    help=f"prompts in the sample: the task's first N (below {MIN_DIAGNOSE_SAMPLE}, the paper's sample, "
                    "a warning says what the verdict is worth)")
    dg.add_argument("--n", dest="limit", type=whole(1), default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name of --limit
    dg.add_argument("--threshold", type=fraction, default=0.2, help="intervention rate above which guidance looks unreliable (the paper's 20%%)")
    dg.add_argument("--gamma", type=number, default=0.4, help="the base decides alone when its top-1 probability is >= gamma")
    dg.add_argument("--alpha", type=alpha, default="auto", help="the guide's weight: 'auto' (BlendIn's adaptive alpha) or a number in [0, 1]")
    dg.add_argument("--max-new-tokens", type=whole(1), help=f"the most tokens per answer (default: the task's own, as eval: {task_tokens})")
    dg.add_argument("--batch-size", type=whole(1), default=16, help="prompts decoded together")
    add_models(dg)
    dg.set_defaults(base=None)  # None: not given (the default pair's base), so that --pair can refuse a --base given with it
    dg.add_argument("--pair", action="append", default=None, metavar="BASE:GUIDE",
                    help="diagnose this pair (repeatable, as for eval; instead of --base/--guide): each pair's verdict, "
                    "then the pairs ranked by intervention rate")
    dg.add_argument("--base-prompt", default="plain", help="plain or chat: the base reads its own chat template too")
    dg.add_argument("--json", action="store_true", help="print the diagnosis as one JSON object")
    dg.add_argument("--save-profile", metavar="FILE", default=None,
                    help="fit a reliability profile on the sample (the base alone, each guide alone, BlendIn with each guide; "
                    "a task with gold answers), print each guide's evidence and weight, and write it to FILE for --profile")
    dg.add_argument("--max-intervention-rate", type=fraction, default=TRIED["max_intervention_rate"], metavar="RATE", help="the budget variant's rate")
    dg.add_argument("--agreement-top-k", type=whole(1), default=TRIED["agreement_top_k"], metavar="K", help="the agreement filter variant's k")
    dg.add_argument("--retire-below", type=fraction, default=TRIED["retire_below"], metavar="FLOOR", help="the retirement variant's floor")
    dg.add_argument("--retire-after", type=whole(1), default=TRIED["retire_after"], metavar="N", help="the retirement variant's consultations before retiring")
    dg.add_argument("--plain-only", dest="mitigations", action="store_false",
                    help="only the plain method's rate and verdict (by default each mitigation runs on the sample too, "
                    "and, where the task has gold answers, the base and each guide alone)")
