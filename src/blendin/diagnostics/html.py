"""One self-contained HTML page per answer: each token shaded by who chose it and with what weight.

    open("trace.html", "w").write(trace_html(result, prompt="What is 12 * 7?"))

The page shows the question (``prompt``, the user's text), then the answer. Base tokens are plain;
blended tokens are tinted blue, as deep as their alpha; tokens the guide chose alone are amber.
Hovering a token shows a card: base top-1, guide top-1, alpha, agreement and the competing tokens
(when the result was made with ``trace_top``). Under the answer, why it ended (``stop_reason``): a
page of a cut-off answer should say so. No scripts, no external files.
"""

from __future__ import annotations

from html import escape

from ..types import GenerationResult

STYLE = """
body { font: 15px/1.7 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; color: #222; }
header { color: #555; margin-bottom: 1rem; } .legend span { padding: 0 .4rem; margin-right: .5rem; }
#answer { white-space: pre-wrap; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; }
#question { white-space: pre-wrap; background: #f6f6f6; border-radius: 6px; padding: .6rem 1rem; margin-bottom: 1rem; }
.label { color: #555; font-size: .85em; margin: 0 0 .2rem; } #stop { color: #555; margin-top: .6rem; }
.tok { position: relative; border-radius: 3px; cursor: default; }
.tok.guide { background: rgba(255, 176, 0, .45); }
.tok.eos { color: #999; font-size: .75em; }
.card { display: none; position: absolute; left: 0; top: 1.6em; z-index: 2; width: 19rem; white-space: normal;
        background: #fff; border: 1px solid #aaa; border-radius: 6px; padding: .5rem .7rem; font-size: 12px;
        line-height: 1.4; box-shadow: 0 2px 8px rgba(0,0,0,.2); }
.tok:hover .card, .tok:focus .card { display: block; }
.card table { border-collapse: collapse; width: 100%; } .card td { padding: 0 .3rem; }
"""


STOP_REASONS = {
    "eos": "the model wrote its end-of-sequence token",
    "length": "the token limit (max_new_tokens) was reached: the answer may be cut off",
    "stop": "a stop string was written (the base's next turn, or one asked for); the text ends before it",
    "repeat": "the answer began repeating itself (repeat_stop): it stops after the second copy",
    "error": "decoding failed",
}


def trace_html(result: GenerationResult, prompt: str | None = None) -> str:
    """The page for ``result``; ``prompt``: the question it answers (shown above the answer), as the
    user gave it (left out when None)."""
    spans = "".join(_span(i, s) for i, s in enumerate(result.steps))
    alpha = "-" if result.mean_alpha is None else f"{result.mean_alpha:.2f}"
    head = (f"<b>{escape(result.method)}</b> · base {escape(result.base)} · guide {escape(result.guide)} · "
            f"gamma {result.gamma} · alpha {escape(str(result.alpha))} · {result.tokens} tokens · "
            f"{result.interventions} interventions ({100 * result.intervention_rate:.1f}%) · mean alpha {alpha}")
    legend = ('<div class="legend"><span>base</span><span style="background: rgba(40,110,255,.5)">blend (deeper = larger alpha)</span>'
              '<span class="tok guide">guide</span></div>')
    if result.guides and (len(result.guides) > 1 or result.held or any(g["filtered"] or g["retired_at"] is not None for g in result.guides)):
        head += "".join(f'<div class="guide-line">{_guide_line(g)}</div>' for g in result.guides)
        if result.held:
            head += f'<div class="guide-line">base alone at uncertain steps: {escape(", ".join(f"{k} {v}" for k, v in result.held.items()))}</div>'
    question = "" if prompt is None else f'<p class="label">Question</p><div id="question">{escape(prompt)}</div>'
    return (f'<!doctype html><html><head><meta charset="utf-8"><title>blendin trace</title><style>{STYLE}</style></head>'
            f'<body><header>{head}{legend}</header>{question}<p class="label">Answer</p><div id="answer">{spans}</div>'
            f'{_stop_line(result)}</body></html>\n')


def _guide_line(g: dict) -> str:
    """One guide's part in the answer: its interventions, passes, reliability, retirement."""
    retired = "" if g["retired_at"] is None else f" · retired at token {g['retired_at']} ({g['passes_saved']} passes saved)"
    filtered = f" · {g['filtered']} set aside by the agreement filter" if g["filtered"] else ""
    return (f"guide {escape(g['guide'])}: {g['interventions']} interventions · {g['passes']} passes · "
            f"reliability {g['reliability']:.2f}{filtered}{retired}")


def _stop_line(result: GenerationResult) -> str:
    """Why the answer ended, in words, with the JSON's ``stop_reason`` (and the error, if any)."""
    reason = result.stop_reason
    words = STOP_REASONS.get(reason, "")
    if reason == "error" and result.error:
        words = f"{words}: {result.error}"
    return f'<div id="stop">stopped: <b>{escape(reason)}</b>{" (" + escape(words) + ")" if words else ""}</div>'


def _span(i: int, s) -> str:
    text = escape(s.token) if s.token else "⏎eos" if s.token_id is not None else "·"
    classes = f"tok {s.source}" + (" eos" if not s.token else "")
    style = f' style="background: rgba(40,110,255,{0.15 + 0.6 * (s.alpha or 0):.2f})"' if s.source == "blend" else ""
    return f'<span class="{classes}" data-i="{i}" tabindex="0"{style}>{text}<span class="card">{_card(s)}</span></span>'


def _card(s) -> str:
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"
    rows = [("source", s.source), ("base top-1", pct(s.base_top_prob)), ("guide top-1", pct(s.guide_top_prob)),
            ("alpha", "-" if s.alpha is None else f"{s.alpha:.3f}"), ("agreement", pct(s.agreement)),
            ("chosen", pct(s.chosen_prob))]
    html = "<table>" + "".join(f"<tr><td>{k}</td><td>{escape(str(v))}</td></tr>" for k, v in rows) + "</table>"
    for g in s.guides or ():  # several guides, or a mitigation: each guide consulted at this step
        state = "" if g["kept"] else " (set aside)"
        html += (f"<div><b>guide {g['guide'] + 1}</b>: <code>{escape(repr(g['top']))}</code> {100 * g['m_g']:.1f}%, "
                 f"weight {g['weight']:.3f}, agreement {100 * g['agreement']:.1f}%, reliability {g['reliability']:.2f}{state}</div>")
    for role, alts in (s.alternatives or {}).items():
        items = ", ".join(f"<code>{escape(repr(t))}</code> {100 * p:.1f}%" for t, p in alts)
        html += f"<div><b>{role}</b>: {items}</div>"
    return html
