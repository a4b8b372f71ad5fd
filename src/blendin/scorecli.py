"""``blendin score``: the log-probability of continuations under each method, without a server.

    blendin score --input pairs.jsonl --method base,guide,blendin --output scores.jsonl

Input lines: ``{"context": "Question: ...\\nAnswer:", "continuation": " Paris", "id": "q1"}`` (``id``
optional: the line number). Output lines, one per input line, in order:
``{"id", "tokens", "methods": {"blendin": {"logprob", "greedy", "interventions"[, "token_logprobs"]}, ...}}``:
the continuation's summed log-probability under each method (``scoring``), whether each of its
tokens was the method's argmax (lm-evaluation-harness's ``is_greedy``), and the positions where a
guide was consulted and counted. The split of context and continuation into tokens is
lm-evaluation-harness's (``scoring.split_pair``). Every line is checked before any model loads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .cliargs import add_mitigations, add_models, alpha, number, whole
from .config import BlendConfig
from .errors import ConfigError


def add_score_options(p) -> None:
    d = BlendConfig()
    p.add_argument("--input", required=True, metavar="FILE",
                   help='JSONL, one {"context": "...", "continuation": "...", "id"?} per line')
    p.add_argument("--output", metavar="FILE", help="JSONL of scores, one line per input line (default: print them)")
    p.add_argument("--method", default="base,blendin", help="comma list of base, guide, switch, blendin (nudging writes words: it does not score)")
    p.add_argument("--per-token", action="store_true", help="also give each token's log-probability, text and source (base, blend, guide)")
    p.add_argument("--batch-size", type=whole(1), default=16, help="texts scored together")
    p.add_argument("--gamma", type=number, default=d.gamma, help="the base decides alone when its top-1 probability is >= gamma")
    p.add_argument("--alpha", type=alpha, default="auto", help="the guide's weight: 'auto' (BlendIn's adaptive alpha) or a number in [0, 1]")
    add_models(p)
    add_mitigations(p)


def read_pairs(path: str) -> list[dict]:
    """Every line as {"id", "context", "continuation"}; a bad line is an error naming its number."""
    from .jsonl import read_objects, unique_ids

    rows = read_objects(path, '{"context": ..., "continuation": ...}')
    for n, obj in rows:
        if not isinstance(obj.get("context"), str) or not isinstance(obj.get("continuation"), str) or not obj["continuation"]:
            raise ConfigError(f'{path}:{n}: each line needs a "context" string and a non-empty "continuation" string, '
                              f'e.g. {{"context": "The capital of France is", "continuation": " Paris"}}')
    unique_ids(path, rows)
    return [{"id": obj["id"], "context": obj["context"], "continuation": obj["continuation"]} for _, obj in rows]


def cmd_score(a, config: BlendConfig) -> int:
    """``config``: the CLI's models, mitigations, gamma and alpha (its method is each of --method in turn)."""
    from .scoring import check_method

    methods = [m.strip() for m in a.method.split(",") if m.strip()]
    configs = {m: config.with_(method=m) for m in methods}  # each checked here, before any model loads
    for c in configs.values():
        check_method(c)
    if a.output:
        out = Path(a.output).expanduser()
        if not out.resolve().parent.is_dir():
            raise ConfigError(f"--output {a.output}: its folder does not exist; create it, or name a file in an existing folder")
    items = read_pairs(a.input)
    from .pair import load_pair
    from .scoring import score_ids, split_pair

    pair = load_pair(config, tuple(methods))
    texts = [split_pair(pair.base.tokenizer, it["context"], it["continuation"]) for it in items]
    scores = {m: score_ids(pair, texts, c, batch_size=a.batch_size) for m, c in configs.items()}
    lines = [_line(item, ids, start, {m: scores[m][i] for m in methods}, a.per_token) for i, (item, (ids, start)) in enumerate(zip(items, texts))]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    if a.output:
        Path(a.output).expanduser().write_text(text, encoding="utf-8")
        print(f"blendin: {len(items)} continuations scored under {', '.join(methods)} -> {a.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    failed = sum(1 for line in lines for m in line["methods"].values() if "error" in m)
    return 1 if failed else 0


def _line(item: dict, ids: list[int], start: int, by_method: dict, per_token: bool) -> dict:
    methods = {}
    for m, s in by_method.items():
        if s.error is not None:
            methods[m] = {"error": s.error}
            continue
        methods[m] = {"logprob": s.logprob, "greedy": s.greedy, "interventions": s.interventions}
        if per_token:
            methods[m]["token_logprobs"] = [[t.text, t.logprob, t.source] for t in s.tokens]
    return {"id": item["id"], "tokens": len(ids) - start, "methods": methods}
