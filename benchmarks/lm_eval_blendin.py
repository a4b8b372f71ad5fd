"""lm-evaluation-harness against ``blendin serve``, one server per method (issue 36).

    python benchmarks/lm_eval_blendin.py --data ../shared/data --limit 200 --methods base,guide,blendin \
        --tasks arc_challenge_blendin --out runs/lmeval36

For each method: ``blendin serve --method M`` on a free port (the embedded pair, or --base/--guide),
then ``lm_eval --model local-completions`` over benchmarks/lm_eval's task files (their data paths
pointed at --data), every item logged (``--log_samples``) into OUT/M. A method whose results are in
OUT already is not run again. Then a table of each task's metrics per method, and, with --check N,
the log-probability check: the base method's echo logprobs of the first N ARC prompts (question and
right answer) from the server against the base model's own through transformers, the largest
difference per token.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(method: str, models: list[str], port: int, log: Path) -> subprocess.Popen:
    """``blendin serve`` for one method, waited on until /health answers."""
    import httpx2 as httpx

    proc = subprocess.Popen([str(BIN / "blendin"), "serve", "--port", str(port), "--method", method, "--max-tokens-cap", "1024", *models],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"blendin serve --method {method} ended (see {log})")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"blendin serve --method {method} did not answer in 10 minutes (see {log})")


def task_files(data: Path, into: Path) -> Path:
    for f in (ROOT / "benchmarks" / "lm_eval").glob("*.yaml"):
        (into / f.name).write_text(f.read_text().replace("../shared/data", str(data.resolve())))
    return into


def run_method(method: str, a, include: Path) -> None:
    out = Path(a.out) / method
    if glob.glob(str(out / "**" / "results_*.json"), recursive=True):
        print(f"{method}: results in {out} already", file=sys.stderr)
        return
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = serve(method, a.models, port, out / "serve.log")
    try:
        env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
        args = [str(BIN / "lm_eval"), "--model", "local-completions", "--model_args",
                f"base_url=http://127.0.0.1:{port}/v1/completions,model=blendin,num_concurrent={a.concurrent},max_retries=1",
                "--batch_size", str(a.batch_size), "--include_path", str(include), "--tasks", a.tasks,
                "--limit", str(a.limit), "--output_path", str(out), "--log_samples"]
        start = time.time()
        subprocess.run(args, check=True, env=env)
        (out / "seconds.txt").write_text(f"{time.time() - start:.0f}\n")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def table(a) -> None:
    print("| method | task | metric | value | stderr | seconds |\n|---|---|---|---|---|---|")
    for method in a.methods.split(","):
        files = sorted(glob.glob(str(Path(a.out) / method / "**" / "results_*.json"), recursive=True))
        if not files:
            continue
        results = json.loads(Path(files[-1]).read_text())["results"]
        seconds = (Path(a.out) / method / "seconds.txt")
        took = seconds.read_text().strip() if seconds.exists() else "-"
        for task, metrics in results.items():
            for key, value in metrics.items():
                if key.endswith("_stderr,none") or "," not in key or key.startswith("alias") or "stderr" in key:
                    continue
                err = metrics.get(key.replace(",", "_stderr,"), "-")
                print(f"| {method} | {task} | {key} | {value:.3f} | {err if isinstance(err, str) else f'{err:.3f}'} | {took} |")


def check(a) -> None:
    """The base method's echo logprobs against the base model's own (transformers), first N ARC prompts."""
    import httpx2 as httpx
    import torch

    from blendin import BlendConfig, load_pair

    items = [json.loads(line) for line in (Path(a.data) / "arc_challenge" / "test.jsonl").read_text().splitlines()[: a.check]]
    texts = [f"Question: {it['question']}\nAnswer: {it['choices'][it['answer_idx']]['text']}" for it in items]
    pair = load_pair(BlendConfig(method="base"))
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = serve("base", a.models, port, Path(tmp) / "serve.log")
        try:
            worst = 0.0
            for text in texts:
                ids = pair.base.tokenizer.encode_prompt(text)
                body = httpx.post(f"http://127.0.0.1:{port}/v1/completions", timeout=600,
                                  json={"model": "blendin", "prompt": ids, "echo": True, "logprobs": 1, "max_tokens": 0}).json()
                served = body["choices"][0]["logprobs"]["token_logprobs"][1:]
                with torch.inference_mode():
                    logits = pair.base.model(torch.tensor([ids])).logits[0].float()
                own = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].tolist()
                worst = max(worst, max(abs(x - y) for x, y in zip(served, own)))
        finally:
            proc.terminate()
    print(f"log-probability check: {len(texts)} ARC prompts, {sum(len(t) for t in texts)} characters: "
          f"largest |served - transformers| per token {worst:.2e} ({'within' if worst <= 1e-4 else 'PAST'} 1e-4)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="the folder holding arc_challenge/ and gsm8k/ (../shared/data)")
    ap.add_argument("--limit", type=int, default=200, help="the first N items of each task")
    ap.add_argument("--methods", default="base,guide,blendin")
    ap.add_argument("--tasks", default="arc_challenge_blendin,gsm8k_blendin")
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=8, help="prompts per request (lm-eval's --batch_size)")
    ap.add_argument("--concurrent", type=int, default=1, help="requests in flight (lm-eval's num_concurrent)")
    ap.add_argument("--check", type=int, default=0, help="also check the base method's logprobs on the first N ARC prompts")
    ap.add_argument("models", nargs="*", help="serve options naming the models, after --: -- --base X --guide Y (default: the embedded pair)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        include = task_files(Path(a.data), Path(tmp))
        for method in a.methods.split(","):
            run_method(method, a, include)
    table(a)
    if a.check:
        check(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
