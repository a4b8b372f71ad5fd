"""How far llama.cpp's quantized compute moves BlendIn from the float32 path, and where answers part (issue 34).

    python benchmarks/llamacpp_parity.py --pair embedded --data ../shared/data/gsm8k/test.jsonl --limit 50

Both paths run the same GGUF weights: transformers dequantized to float32, llama.cpp as quantized.
First the movement: along each float32 answer (its tokens forced on both), the base's next-token
distribution from each backend, compared step by step (the largest |p - q|, and |m_b - m_b'|, the
number the gamma gate reads). The near-tie tolerance is the 99th percentile of the per-step largest
|p - q| (``parity.BACKEND_TIE_TOLERANCE`` holds the larger of the measured pairs'): a parting is
rounding of the quantization, not a fault, where a movement that large could have made it: the
float32 run's top two tokens less than twice it apart (each moving by it swaps them), or m_b less
than it from gamma (``parity.backend_parity``'s judgement, ``_moved_gap``).
Then the answers: BlendIn greedy on both, the first parting of each item, near tie or not. GSM8K's
first items (the task's own prompt format), greedy, gamma 0.4.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from decode import PAIRS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=sorted(PAIRS), default="embedded")
    ap.add_argument("--data", required=True, help="GSM8K's test.jsonl (or a folder laid out like shared/data)")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tolerance", type=float, default=None,
                    help="judge the partings with this tolerance instead of measuring the movement first (parity.BACKEND_TIE_TOLERANCE)")
    a = ap.parse_args()
    from blendin import BlendConfig
    from blendin.decoding import generate_many
    from blendin.eval.runinfo import task_config
    from blendin.eval.tasks import get_task, load_items
    from blendin.pair import load_pair
    from blendin.parity import _moved_gap, compare_answers

    base, guide = PAIRS[a.pair]
    task = get_task("gsm8k")
    prompts = [task.render(it) for it in load_items(task, a.data, a.limit)]
    config = task_config(task, BlendConfig(base=base, guide=guide, max_new_tokens=a.tokens, device="cpu", threads=a.threads, trace_top=2))
    pairs = {b: load_pair(config.with_(backend=b)) for b in ("transformers", "llama.cpp")}
    runs = {b: dict(generate_many(pairs[b], prompts, config.with_(backend=b), batch_size=8)) for b in pairs}
    moved, gate = _movement(pairs, prompts, runs["transformers"], config) if a.tolerance is None else ([a.tolerance], [0.0])
    tolerance = float(torch.quantile(torch.tensor(moved), 0.99)) if a.tolerance is None else a.tolerance
    judged = compare_answers(*([runs[b][i] for i in range(len(prompts))] for b in ("transformers", "llama.cpp")),
                             config, tolerance, names=("float32", "llama.cpp"), gap=_moved_gap)
    partings = judged["partings"]
    print(f"llama.cpp against float32: {base} + {guide}, BlendIn greedy, {len(prompts)} GSM8K items, {a.tokens} tokens; "
          f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores")
    print(f"steps compared (base, forced along the float32 answers): {len(moved)}")
    print(f"largest |p - q| per step: median {_q(moved, .5):.4f}, p90 {_q(moved, .9):.4f}, p99 {tolerance:.4f}, max {max(moved):.4f}")
    print(f"|m_b - m_b'| per step: median {_q(gate, .5):.4f}, p99 {_q(gate, .99):.4f}, max {max(gate):.4f}")
    print(f"near-tie tolerance (p99 of the largest |p - q|): {tolerance:.4f}")
    print(f"identical answers: {judged['identical']} of {len(prompts)}; partings: {len(partings)}, "
          f"near ties (within the tolerance): {sum(p['near_tie'] for p in partings)}; every parting a near tie: {judged['ok']}")
    print("| item | step | kind | decisive gap (movement units) | near tie |\n|---|---|---|---|---|")
    for p in partings:
        print(f"| {p['prompt']} | {p['step']} | {p['kind']} | {p['gap']:.4f} | {'yes' if p['near_tie'] else 'no'} |")
    return 0


def _movement(pairs, prompts, results, config) -> tuple[list[float], list[float]]:
    """Per step of each float32 answer, the largest |p - q| of the two base distributions and |m_b - m_b'|."""
    from blendin.prompts import prompt_ids

    moved, gate = [], []
    models = [pairs[b].base for b in ("transformers", "llama.cpp")]
    for i, prompt in enumerate(prompts):
        ids = prompt_ids(models[0].tokenizer, config.prompt, prompt, chat=False)
        answer = models[0].tokenizer.encode(results[i].text)
        sessions = [m.session() for m in models]
        for n in range(len(answer) + 1):
            p, q = (_probs(s, ids + answer[:n]) for s in sessions)
            moved.append(float((p - q).abs().max()))
            gate.append(abs(float(p.max()) - float(q.max())))
        for s in sessions:
            getattr(s, "close", lambda: None)()
    return moved, gate


def _probs(session, ids: list[int]) -> torch.Tensor:
    session.sync(ids)
    return torch.exp(session.logprobs()).float().cpu()


def _q(xs: list[float], q: float) -> float:
    return float(torch.quantile(torch.tensor(xs), q))


if __name__ == "__main__":
    sys.exit(main())
