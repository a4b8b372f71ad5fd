"""``blendin demo``: one question answered three ways, base alone, guide alone and BlendIn, with the
tokens the guide chose or blended marked, and one line that says what to look at.

Why this question and this pair. The measurements (docs/results/arc-four-pairs.md and
docs/results/lm-eval-embedded-pair.md) show where the embedded pair (the Gemma-3-270m base, the
SmolLM2-135M guide) does something a newcomer can see: on ARC-Challenge, asked a lettered
multiple-choice question, the pretrained base alone mostly writes no letter at all (124 of the first
200 items: it starts the next "Question:"), the guide alone often names two letters, and BlendIn
answered with a letter, lifting the score from 0.085 to 0.240, by letting the guide choose at the
few tokens where the base was unsure. So the demo asks a question of that kind, in the ARC task's
prompt format (``eval.tasks.MC``). The question is written here (the benchmark's items stay in
../shared/data), and nothing printed is written here: every answer is decoded when the demo runs,
and the closing line is read from those answers.

    $ blendin demo                 # the three answers, guided tokens coloured (or [bracketed])
    $ blendin demo --show-alpha    # each guided token's alpha beside it
    $ blendin demo --html          # also the trace page of the BlendIn answer, opened in a browser
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .config import BlendConfig
from .eval.extract import choice_letter
from .eval.tasks import LETTERS, MC, lettered

QUESTION = "What part of a plant takes in water from the soil?"
CHOICES = ("the leaves", "the roots", "the flowers", "the seeds")
ANSWER = "B"
MAX_NEW_TOKENS = 64  # the ARC task's answer length

# 256-colour backgrounds: a blended token deeper blue for a larger alpha; a token the guide wrote alone amber
BLUES = (153, 117, 75, 33)
AMBER = 214


def add_demo_options(p) -> None:
    """demo's own options (the decoding options come from ``cliargs.add_decoding_options``)."""
    p.add_argument("--show-alpha", action="store_true", help="print each guided token's alpha (the guide's weight) beside it")
    p.add_argument("--html", nargs="?", const="blendin-demo.html", default=None, metavar="FILE",
                   help="also write the trace page of the guided answer (default file: blendin-demo.html) and open it in a browser")
    p.set_defaults(max_new_tokens=MAX_NEW_TOKENS, system=MC.system, question_prefix=MC.question_prefix, answer_cue=MC.answer_cue)


def prompt_text() -> str:
    return lettered(QUESTION, list(CHOICES))


def demo_configs(config: BlendConfig) -> list[tuple[str, BlendConfig]]:
    """The three answers: the base alone, the guide alone, and the method asked for (BlendIn by default)."""
    label = "BlendIn" if config.method == "blendin" else config.method
    return [("base alone", config.with_(method="base")), ("guide alone", config.with_(method="guide")), (label, config)]


def run_demo(config: BlendConfig, show_alpha: bool = False, html: str | None = None, as_json: bool = False, out=None) -> int:
    from .decoding import generate_many
    from .pair import load_pair

    out = out or sys.stdout
    if html:
        config = config.with_(trace_top=5)
    answers = demo_configs(config)
    if not as_json:
        print(f"base {config.base}, guide {config.guide_label}; gamma {config.gamma}, alpha {config.alpha_label}\n", file=out)
        print(f"Question: {prompt_text()}\n", file=out, flush=True)
    pair = load_pair(config)
    jobs = [{"prompt": prompt_text(), "config": c} for _, c in answers]
    results = dict(generate_many(pair, jobs, config, batch_size=len(jobs)))
    results = [results[i] for i in range(len(jobs))]
    if as_json:
        print(json.dumps({"question": prompt_text(), "answer": ANSWER,
                          "answers": [{"label": label, **r.to_dict()} for (label, _), r in zip(answers, results)]}, ensure_ascii=False), file=out)
    else:
        _print_answers(answers, results, show_alpha, out)
    if html:
        _write_page(html, results[-1], out)
    return 0


def _print_answers(answers: list, results: list, show_alpha: bool, out) -> None:
    """Each answer under its label, the guided tokens marked (not the guide alone's: all are its own),
    then the line that says what to look at."""
    colour = _colour(out)
    for (label, c), r in zip(answers, results):
        print(f"-- {label} {_count(c, r)}", file=out)
        print(render(r, colour=colour, marked=c.method != "guide", show_alpha=show_alpha) + "\n", file=out)
    print(look_at([label for label, _ in answers], results, colour), file=out)


def _count(config: BlendConfig, r) -> str:
    if config.method == "base":
        return f"({r.tokens} tokens)"
    if config.method == "guide":
        return f"({r.tokens} tokens, every one the guide's)"
    return f"({r.tokens} tokens, the guide stepped in on {r.interventions} of them: {100 * r.intervention_rate:.0f}%)"


def render(result, colour: bool, marked: bool = True, show_alpha: bool = False) -> str:
    """The answer token by token: tokens the guide chose or blended marked (a background colour by
    alpha, or [brackets] where there is no colour), then, dimmed, what a stop cut off (the base's
    next "Question:"), so that what the model wrote is all on screen."""
    kept, parts, written = len(result.text), [], 0
    for step in result.steps:
        token = step.token or ""
        inside = token[: max(0, kept - written)]
        written += len(token)
        if inside and marked and step.source != "base":
            note = f" {step.alpha:.2f}" if show_alpha and step.alpha is not None else ""
            parts.append(_marked(inside, step, note, colour))
        else:
            parts.append(inside)
    text = "".join(parts)
    cut = cut_text(result)
    if cut:
        what = ", the start of a new question," if cut.strip().startswith(MC.question_prefix.strip()) else ", a stop string,"
        text += _dim(f" (then it wrote {cut!r}{what} cut there)" if text.strip() else
                     f"(nothing kept: it wrote {cut!r}{what} cut there)", colour)
    if result.stop_reason == "repeat":
        text += _dim(" [stopped: it began repeating itself]", colour)
    elif result.stop_reason == "length":
        text += _dim(" [stopped: the token limit]", colour)
    return text.strip("\n") or _dim("(nothing)", colour)


def cut_text(result) -> str:
    """What a stop string cut from the end of the answer (the tokens were decoded; the text ends before them)."""
    full = "".join(s.token or "" for s in result.steps)
    return full[len(result.text):] if result.stop_reason == "stop" and full.startswith(result.text) else ""


def _marked(token: str, step, note: str, colour: bool) -> str:
    if not colour:
        return f"[{token}{note}]"
    if step.source == "guide":
        back = AMBER
    else:
        back = BLUES[min(len(BLUES) - 1, int((step.alpha or 0) * len(BLUES)))]
    return f"\x1b[48;5;{back}m\x1b[30m{token}\x1b[0m" + (f"\x1b[2m{note}\x1b[0m" if note else "")


def _dim(text: str, colour: bool) -> str:
    return f"\x1b[2m{text}\x1b[0m" if colour else text


def _colour(out) -> bool:
    """Colour where the output is a terminal that has it (NO_COLOR and TERM=dumb turn it off)."""
    return bool(getattr(out, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def look_at(labels: list[str], results: list, colour: bool) -> str:
    """The line that says what to look at, read from the answers themselves."""
    said = [f"{label}: {_verdict(r)}" for label, r in zip(labels, results)]
    guided = results[-1]
    mark = "coloured" if colour else "in [brackets]"
    return (f"What to look at: the tokens {mark} are where the guide stepped in ({guided.interventions} of {guided.tokens} tokens); "
            f"the base wrote the rest. The right answer is {ANSWER}. " + "; ".join(said) + ".")


def _verdict(result) -> str:
    letter = choice_letter(result.text, len(CHOICES))
    if letter is None:
        cut = cut_text(result).strip()
        return "no letter" + (f" (it wrote {cut!r} instead)" if cut and not result.text.strip() else "")
    return f"{letter} ({'right' if letter == ANSWER else 'wrong'})"


def _write_page(path: str, result, out) -> None:
    import webbrowser

    from .diagnostics.html import trace_html

    target = Path(path).expanduser().resolve()
    target.write_text(trace_html(result, prompt=prompt_text()), encoding="utf-8")
    opened = webbrowser.open(target.as_uri())
    print(f"trace page: {target}" + ("" if opened else " (no browser found here: open it yourself)"), file=out)


assert ANSWER in LETTERS[: len(CHOICES)]
