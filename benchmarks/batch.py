"""Pass time against batch size: what a larger --batch-size buys on this machine.

    python benchmarks/batch.py                                   # the 1.5B Qwen base, rows 16..128
    python benchmarks/batch.py --model gemma-3-270m --rows 16,64
    python benchmarks/batch.py --context 300 --passes 8

One model (the cached conversion of an embedded name, or a model folder), float32, on the CPU. For
each batch size S: S rows read a random prompt of --context tokens, then --passes decoding passes of
one token per row are timed (transformers' own cache; the weights and the pass are what blendin's
slot cache runs). Prints a table: rows, ms per pass, rows decoded per second. On a machine where a
pass is bound by its matrix products, rows per second grows with S until the products fill the cores;
there `eval --together --batch-size 64` decodes several times faster than 16 rows a pass.
"""

from __future__ import annotations

import argparse
import platform
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct", help="an embedded name or a model folder")
    ap.add_argument("--rows", default="16,32,48,64,96,128", help="comma list of batch sizes")
    ap.add_argument("--context", type=int, default=40, help="tokens each row holds before the timed passes")
    ap.add_argument("--passes", type=int, default=4, help="timed passes per batch size")
    a = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from blendin.models import prepare

    folder = prepare(a.model)  # converted once, as blendin loads it
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    print(f"{a.model} float32, {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"context {a.context} tokens, {a.passes} passes each")
    print("| rows | ms per pass | rows per second |")
    print("|---|---|---|")
    for rows in (int(x) for x in a.rows.split(",")):
        with torch.inference_mode():
            cache = model(input_ids=torch.randint(0, 1000, (rows, a.context)), use_cache=True, logits_to_keep=1).past_key_values
            start = time.perf_counter()
            for _ in range(a.passes):
                model(input_ids=torch.randint(0, 1000, (rows, 1)), past_key_values=cache, use_cache=True, logits_to_keep=1)
            seconds = (time.perf_counter() - start) / a.passes
        print(f"| {rows} | {1000 * seconds:.0f} | {rows / seconds:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
