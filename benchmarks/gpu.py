"""The device check: the Qwen pair on a GPU in bfloat16: batched parity for every method, then decode speed.

    python benchmarks/gpu.py                                   # cuda, bfloat16, the embedded Qwen pair
    python benchmarks/gpu.py --device cpu --dtype bfloat16 --quick      # the same code paths on a CPU
    python benchmarks/gpu.py --weights random --models DIR     # the same architectures, random weights

Prints one JSON object: device, dtype, weights, pass parity per model (batched against alone: the
largest probability difference), greedy parity per method (batched against alone: rows identical,
tokens before the first difference, whether each difference was a near tie), decode tokens/s of the
base alone and of BlendIn at batch 1 and 16 (ratio_b1, ratio_b16), the intervention rate, load
seconds and peak GPU memory. Under 8 minutes on one GPU; no network.

``--weights random`` is for a machine that cannot have the model files (the lent GPU machines take a
64 MiB working tree and reach no network): DIR holds each model's folder without weights
(config.json and tokenizer files, named as the embedded models), and the models are built from their
configs with seeded random weights: the same shapes, kernels and cache, so speed and batching parity
are measured as for the real ones. Random models are never confident, so gamma is then set to the
base's 10th percentile of m_b (measured first), which makes BlendIn intervene on about 10% of tokens,
as a healthy pair does; ``intervention_rate`` reports what it did.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout without installing

from decode import CONFIGS, PAIRS, PROMPTS, rounds  # noqa: E402  (benchmarks/decode.py: 16 word problems, its timed rounds)

METHODS = ("base", "guide", "switch", "nudging", "blendin")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--pair", default="qwen", choices=sorted(PAIRS))
    ap.add_argument("--weights", default="cache", choices=["cache", "random"], help="cache: the embedded models; random: see above")
    ap.add_argument("--models", help="with --weights random: the folder of model folders (config + tokenizer)")
    ap.add_argument("--quick", action="store_true", help="fewer prompts and tokens (a CPU run)")
    ap.add_argument("--tokens", type=int, default=None, help="new tokens per answer in the speed runs (default 128, quick 16)")
    ap.add_argument("--rates", default="0.1", help="with --weights random: the intervention rates to calibrate gamma to (comma list)")
    ap.add_argument("--kernels", action="store_true", help="also: pass parity of both models in float32 and bfloat16 under each SDPA kernel")
    ap.add_argument("--kernels-only", action="store_true", help="only that (with --weights random)")
    a = ap.parse_args()
    import torch

    from blendin import BlendConfig
    from blendin.pair import Pair, load_pair
    from blendin.parity import greedy_parity, pass_parity

    config = BlendConfig(base=PAIRS[a.pair][0], guide=PAIRS[a.pair][1], device=a.device, dtype=a.dtype, turn_stop=False)
    device, dtype = config.placement("base").resolve()
    start = time.perf_counter()
    if a.weights == "random":
        pair = Pair(base=random_model(a.models, config.base, device, dtype, seed=1), guide=random_model(a.models, config.guide, device, dtype, seed=2))
    else:
        pair = load_pair(config, methods=("base", "guide"))
    out = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
           "torch": torch.__version__, "dtype": str(dtype).removeprefix("torch."), "weights": a.weights, "pair": list(PAIRS[a.pair]),
           "load_s": round(time.perf_counter() - start, 1), "transformers": __import__("transformers").__version__}
    emit = lambda: print(json.dumps(out), flush=True)  # noqa: E731 - a partial line survives a timeout

    n_tok, n_par = (16, 4) if a.quick else (a.tokens or 128, 8)
    ids = [pair.base.tokenizer.encode_prompt(p) for p in PROMPTS[:4]]
    out["pass_parity"] = {"base": pass_parity(pair.base, ids), "guide": pass_parity(pair.guide, [pair.guide.tokenizer.encode_prompt(p) for p in PROMPTS[:4]])}
    if not out["pass_parity"]["base"]["ok"]:  # where does it part? the same passes with the plainest attention kernel, and in float32
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            out["pass_parity_math_kernel"] = pass_parity(pair.base, ids)
    emit()
    if a.kernels or a.kernels_only:
        out["kernel_parity"] = kernel_parity(a, config, device)
        emit()
    if a.kernels_only:
        return 0
    gammas = {"default": config.gamma}
    if a.weights == "random":
        gammas = {f"rate_{r}": calibrate_gamma(pair, config, PROMPTS[:n_par], rate=float(r)) for r in a.rates.split(",")}
    gamma = next(iter(gammas.values()))
    out["gamma"] = {k: round(g, 6) for k, g in gammas.items()}
    out["greedy_parity"] = {}
    for method in METHODS:
        parity = greedy_parity(pair, PROMPTS[:n_par], config.with_(method=method, gamma=gamma, max_new_tokens=16 if a.quick else 32), batch_size=4)
        out["greedy_parity"][method] = {k: parity[k] for k in ("identical", "rows", "agreeing_tokens", "tokens", "ok")} | {
            "partings": [[p["prompt"], p["step"], round(p["gap"], 4), p["kind"], *([p["detail"]] if p["kind"] != "token" else [])]
                         for p in parity["partings"]]}
    emit()
    for label, g in gammas.items():
        speed = decode_speed(pair, config.with_(gamma=g, max_new_tokens=a.tokens or n_tok), quick=a.quick)
        if len(gammas) == 1:
            out.update(speed)
        else:
            out[f"speed_{label}"] = speed
        emit()
    if device.type == "cuda":
        out["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    emit()
    return 0


def kernel_parity(a, config, device) -> dict:
    """Pass parity of both models (random weights) in float32 and bfloat16, under the default SDPA
    dispatch and under each kernel alone: where a fault shows, which kernel it follows."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from blendin.parity import pass_parity

    kernels = {"default": None, "math": SDPBackend.MATH, "efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        for role, name in (("base", config.base), ("guide", config.guide)):
            model = random_model(a.models, name, device, dtype, seed=3)
            ids = [model.tokenizer.encode_prompt(p) for p in PROMPTS[:4]]
            for label, kernel in kernels.items():
                key = f"{str(dtype).removeprefix('torch.')}/{role}/{label}"
                try:
                    if kernel is None:
                        r = pass_parity(model, ids)
                    else:
                        with sdpa_kernel(kernel):
                            r = pass_parity(model, ids)
                    out[key] = [r["max_prob_diff"], r["max_logprob_diff_top64"], r["ok"]]
                except Exception as exc:  # noqa: BLE001 - a kernel that cannot take these inputs
                    out[key] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
            del model
    return out


def random_model(models: str, name: str, device, dtype, seed: int):
    """An HFModel of ``name``'s architecture and tokenizer (from ``models/name``) with seeded random weights.

    subtle: initialised with std 0.08, not the configs' 0.02: at 0.02 attention is nearly uniform and
    a query that sees the wrong cells hardly changes its output (a planted mask fault moved the top
    log-probabilities by 0.03 at 0.02; by 0.05, against 5e-5 without it, at 0.08, in float32)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from blendin.backends.hf import HFModel

    folder = Path(models) / name
    cfg = AutoConfig.from_pretrained(folder)
    cfg.initializer_range = 0.08
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    return HFModel(model, AutoTokenizer.from_pretrained(folder), name=f"{name} (random weights)")


def calibrate_gamma(pair, config, prompts, rate: float = 0.1, rounds: int = 4) -> float:
    """A gamma at which BlendIn intervenes on about ``rate`` of tokens: the ``rate`` quantile of the m_b
    that BlendIn's own answers met, taken again over a few rounds (guided text changes what the base sees)."""
    from blendin.decoding import generate_many

    gamma = config.gamma
    for _ in range(rounds):
        cfg = config.with_(method="blendin", gamma=gamma, max_new_tokens=32)
        results = [r for _, r in generate_many(pair, prompts, cfg, batch_size=len(prompts))]
        m_b = sorted(s.base_top_prob for r in results for s in r.steps if s.base_top_prob is not None)
        gamma = min(1.0, m_b[int(len(m_b) * rate)])
    return gamma


def decode_speed(pair, config, quick: bool) -> dict:
    """tokens/s of the base alone and of BlendIn at batch 1 and 16 (decode.py's rounds), after an
    untimed warm-up of each configuration (kernels, the allocator, cache rows)."""
    from blendin.decoding import generate_many

    for method, batch in CONFIGS:
        for _ in generate_many(pair, PROMPTS[:batch], config.with_(method=method, max_new_tokens=8), batch_size=batch):
            pass
    totals, _, interventions, blend_tokens, _ = rounds(pair, config, 1 if quick else 2, PROMPTS[: (2 if quick else 4)])
    tps = {k: v[0] / v[1] for k, v in totals.items()}
    return {"new_tokens": config.max_new_tokens,
            "base_tps_b1": round(tps[("base", 1)], 1), "blendin_tps_b1": round(tps[("blendin", 1)], 1),
            "ratio_b1": round(tps[("blendin", 1)] / tps[("base", 1)], 3),
            "base_tps_b16": round(tps[("base", 16)], 1), "blendin_tps_b16": round(tps[("blendin", 16)], 1),
            "ratio_b16": round(tps[("blendin", 16)] / tps[("base", 16)], 3),
            "intervention_rate": round(interventions / max(blend_tokens, 1), 3)}


if __name__ == "__main__":
    sys.exit(main())
