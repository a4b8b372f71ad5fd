"""``blendin diagnose``'s comparison: the sample under the plain method and under each mitigation,
one table, and a recommendation with the flags to use.

    rows, extra = compare(pair, task, items, config, batch_size=16)
    print(comparison_text(rows, extra))

Each variant decodes the same items with the same settings and one change (``VARIANTS``). Where the
task has gold answers every row is scored, and the base alone and each guide alone run too: their
scores give the **capability gap** (the best guide's score minus the base's), which sets the
adaptive gamma variant (``BlendConfig.capability_gap``), and they rank the guides.
"""

from __future__ import annotations

from ..config import BlendConfig

MIN_SAMPLE = 20  # the paper's sample: fewer prompts get a warning


def diagnose_pair(pair, task, items: list[dict], config: BlendConfig, batch_size: int = 16, threshold: float = 0.2,
                  settings: dict | None = None, show=None, progress=None, plain: list | None = None) -> tuple[dict, str]:
    """One pair's diagnosis on ``items`` and its text: the plain method's rate and verdict, BlendIn's
    score on the sample where the task has gold answers, and with ``settings`` (the values each
    mitigation is tried at; None: the plain check only) the comparison of the mitigations. ``show``
    gets the plain diagnosis's text before the comparison runs (it takes a while); ``progress``: a
    stream (stderr) for each decoding's progress, as ``eval`` shows it (``runner.Watch``); ``plain``: the
    plain method's results on ``items`` where they are decoded already (a profile's fit)."""
    from .runner import diagnose, diagnosis_text, score

    results = plain or decode(pair, task, items, [task.render(it) for it in items], config, batch_size, progress, config.method)
    d = diagnose(results, threshold=threshold, gamma=config.gamma, fixed_alpha=config.alpha is not None)
    d["warning"] = small_sample_warning(results, d, MIN_SAMPLE)
    judged = [score(task, it, r.text)[1] for it, r in zip(items, results) if not getattr(r, "error", None)]
    judged = [ok for ok in judged if ok is not None]
    d["score"] = sum(judged) / len(judged) if judged else None
    text = diagnosis_text(d, f"{config.base} guided by {config.guide_label}", task.name, config.gamma)
    if settings is not None and d["samples"]:
        if show is not None:
            show(text)
        rows, extra = compare(pair, task, items, config, batch_size=batch_size, settings=settings, plain=results, progress=progress)
        d.update(variants=[{k: v for k, v in r.items() if k != "results"} for r in rows], **extra)
        text = comparison_text(rows, extra)
    return d, text


# the value each mitigation is tried at, unless diagnose is given another (the reference's budget and k; see docs/decisions.md for the floor)
DEFAULTS = {"max_intervention_rate": 0.15, "agreement_top_k": 5, "retire_below": 0.5, "retire_after": 8}


def variants(settings: dict) -> list[tuple[str, dict, str]]:
    """(name, config changes, flags) of each mitigation tried, with ``settings`` over ``DEFAULTS``."""
    s = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    return [
        ("budget", {"max_intervention_rate": s["max_intervention_rate"]}, f"--max-intervention-rate {s['max_intervention_rate']}"),
        ("agreement", {"agreement_top_k": s["agreement_top_k"]}, f"--agreement-top-k {s['agreement_top_k']}"),
        ("reliability", {"reliability": True}, "--reliability"),
        ("retire", {"retire_below": s["retire_below"], "retire_after": s["retire_after"]},
         f"--retire-below {s['retire_below']} --retire-after {s['retire_after']}"),
    ]


def compare(pair, task, items: list[dict], config: BlendConfig, batch_size: int = 16, settings: dict | None = None,
            plain: list | None = None, progress=None) -> tuple[list[dict], dict]:
    """Rows of the comparison (one per variant, plus the base and each guide alone where the task is
    scored) and the extras: the capability gap and the guides' ranking. ``plain``: the plain
    method's results on ``items`` when they are decoded already."""
    from ..pair import Pair
    from .runner import score

    prompts = [task.render(it) for it in items]
    scored = task.scoring in ("number", "letter", "refusal")

    def run(name, cfg, flags, the_pair=pair, done=None):
        if done is None:
            done = decode(the_pair, task, items, prompts, cfg, batch_size, progress, name)
        return row(name, flags, done, [score(task, it, r.text)[1] if scored and not r.error else None for it, r in zip(items, done)])

    rows = [run("blendin", config, "", done=plain)]
    for name, changes, flags in variants(settings or {}):
        rows.append(run(name, config.with_(**changes), flags))
    extra: dict = {"gap": None, "guides": guide_ranking(rows[0], None)}
    if scored:
        base_row = run("base alone", config.with_(method="base"), "--method base")
        alone = []
        for k, (spec, model, bridge) in enumerate(zip(config.guides, pair.guides, pair.bridges)):
            solo = config.with_(method="guide", guide=spec.model, guide_remote=spec.remote, more_guides=())
            alone.append(run(f"guide alone: {spec.model}", solo, f"--method guide --guide {spec.model}",
                             the_pair=Pair(base=pair.base, guide=model, bridge=bridge)))
        best = max(r["score"] for r in alone)
        gap = round(best - base_row["score"], 4)
        gamma = config.with_(capability_gap=gap).effective_gamma
        rows.append(run(f"adaptive gamma ({gamma})", config.with_(capability_gap=gap), f"--capability-gap {gap}"))
        rows += [base_row, *alone]
        extra = {"gap": gap, "gamma": gamma, "guides": guide_ranking(rows[0], alone)}
    extra["recommendation"] = recommend(rows, scored)
    return rows, extra


def decode(pair, task, items: list[dict], prompts: list[str], config: BlendConfig, batch_size: int, progress, name: str) -> list:
    """``generate_many``'s results in the prompts' order, with their progress on ``progress`` (a
    stream; None: quiet) under ``name``, scored as they finish where the task can score."""
    from ..decoding import generate_many
    from ..progress import Progress
    from .runner import Watch, score

    watch = Watch(Progress(progress) if progress is not None else None, task, f"diagnose {name}", len(prompts),
                  cap=config.max_new_tokens)
    got: dict = {}
    try:
        for i, result in generate_many(pair, prompts, config, batch_size=batch_size, on_token=watch.token):
            got[i] = result
            watch.finished(i)
            ok = None if result.error else score(task, items[i], result.text)[1]
            watch.count({"score": None if ok is None else float(ok), "tokens": result.tokens, "interventions": result.interventions, "error": result.error})
            watch.show()
    finally:
        if watch.line is not None:
            watch.line.end()
    return [got[i] for i in range(len(prompts))]


def row(name: str, flags: str, results: list, correct: list) -> dict:
    """One line of the table: intervention rate, guide passes per prompt, score (None: not scored)."""
    ok = [r for r in results if not r.error]
    tokens = sum(r.tokens for r in ok)
    passes = sum(g["passes"] for r in ok for g in (r.guides or ()))
    judged = [c for c in correct if c is not None]
    return {"variant": name, "flags": flags, "n": len(ok), "intervention_rate": sum(r.interventions for r in ok) / tokens if tokens else 0.0,
            "guide_passes": passes / len(ok) if ok else 0.0, "score": sum(judged) / len(judged) if judged else None,
            "passes_saved": sum(g["passes_saved"] for r in ok for g in (r.guides or ())) / len(ok) if ok else 0.0,
            "held": sum(sum((r.held or {}).values()) for r in ok), "results": results}


def guide_ranking(plain: dict, alone: list[dict] | None) -> list[dict]:
    """The guides, best first: by their score alone where scored, then by their reliability in the plain
    run (mean over answers), with their share of that run's interventions."""
    per: dict[str, dict] = {}
    for r in plain["results"]:
        for g in r.guides or ():
            t = per.setdefault(g["guide"], {"guide": g["guide"], "interventions": 0, "reliability": []})
            t["interventions"] += g["interventions"]
            t["reliability"].append(g["reliability"])
    total = sum(t["interventions"] for t in per.values()) or 1
    out = []
    for k, t in enumerate(per.values()):
        out.append({"guide": t["guide"], "reliability": sum(t["reliability"]) / len(t["reliability"]),
                    "share": t["interventions"] / total, "score_alone": alone[k]["score"] if alone else None})
    return sorted(out, key=lambda g: (-(g["score_alone"] or 0.0), -g["reliability"]))


def recommend(rows: list[dict], scored: bool) -> dict:
    """The variant to use and why. Scored: the best score of all rows; a guided variant wins ties
    (then the one with fewer guide passes), so the base or a guide alone is recommended only when it
    beats every guided variant on this sample. Not scored: the plain method while its rate is within
    the paper's 20%, else the variant with the lowest rate among those that still guide."""
    guided = [r for r in rows if not r["variant"].startswith(("base alone", "guide alone"))]
    if scored:
        best = max(guided, key=lambda r: (r["score"], -r["guide_passes"]))
        alone = max((r for r in rows if r not in guided), key=lambda r: r["score"], default=None)
        if alone is not None and alone["score"] > best["score"]:
            return {"variant": alone["variant"], "flags": alone["flags"],
                    "why": f"it scored {alone['score']:.2f} on this sample, and no guided variant reached it (best {best['score']:.2f}, {best['variant']})"}
        ties = sum(r["score"] == best["score"] for r in guided) > 1
        return {"variant": best["variant"], "flags": best["flags"],
                "why": f"the best score on this sample ({best['score']:.2f} of {best['n']})" + (", with the fewest guide passes among the ties" if ties else "")}
    plain = guided[0]
    if plain["intervention_rate"] <= 0.2:
        return {"variant": plain["variant"], "flags": plain["flags"], "why": "no gold answers to score; the plain rate is within the paper's 20%"}
    best = min(guided[1:], key=lambda r: r["intervention_rate"])
    return {"variant": best["variant"], "flags": best["flags"],
            "why": f"no gold answers to score; the plain rate is {100 * plain['intervention_rate']:.1f}%, and this variant's the lowest"}


def comparison_text(rows: list[dict], extra: dict) -> str:
    """The table, the guides' ranking, the gap and the recommendation, as aligned lines."""
    lines = ["", f"{'variant':<40} {'interventions':>13} {'guide passes':>12} {'saved':>6} {'score':>6}  flags"]
    for r in rows:
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        lines.append(f"{r['variant'][:40]:<40} {100 * r['intervention_rate']:>12.1f}% {r['guide_passes']:>12.1f} "
                     f"{r['passes_saved']:>6.1f} {score:>6}  {r['flags'] or '(as given)'}")
    lines.append("(guide passes and saved: per prompt; scores on this sample only)")
    if extra.get("gap") is not None:
        lines.append(f"capability gap (best guide alone minus base alone): {extra['gap']:+.2f} -> gamma {extra['gamma']}")
    if len(extra.get("guides") or ()) > 1:
        lines.append("guides, best first:")
        for g in extra["guides"]:
            alone = "" if g["score_alone"] is None else f"score alone {g['score_alone']:.2f}, "
            lines.append(f"  {g['guide']}: {alone}reliability {g['reliability']:.2f}, {100 * g['share']:.0f}% of the interventions")
    rec = extra["recommendation"]
    use = f"add {rec['flags']}" if rec["flags"] and not rec["flags"].startswith("--method") else rec["flags"] or "keep the flags as given"
    lines.append(f"recommendation: {rec['variant']}: {use}; {rec['why']}")
    return "\n".join(lines)


def small_sample_warning(results: list, d: dict, minimum: int = 20) -> str | None:
    """What a verdict on fewer than the paper's 20 prompts is worth: the 95% interval of the prompts'
    mean intervention rate, and whether it reaches across the threshold. None for 20 or more."""
    from .runner import mean_ci

    n = d["samples"]
    if not n or n >= minimum:
        return None
    text = (f"a verdict on {n} prompt{'s' if n != 1 else ''} is a rough sign, not a measurement: the paper's check "
            f"uses {minimum} (--limit {minimum} or more)")
    rates = [r.intervention_rate for r in results if not getattr(r, "error", None) and r.tokens]
    ci = mean_ci(rates)
    if ci is None:
        return text + "; one prompt gives no idea of the spread between prompts"
    lo, hi = max(0.0, ci[0]), min(1.0, ci[1])
    if hi - lo < 0.005:
        return text + f"; these prompts all had the same rate ({100 * lo:.0f}%), which says nothing yet of how much prompts differ"
    text += f"; these prompts' intervention rates put their mean between {100 * lo:.0f}% and {100 * hi:.0f}% (95% interval)"
    if lo <= d["threshold"] <= hi:
        text += f", on both sides of the {100 * d['threshold']:.0f}% threshold: the verdict could go either way"
    return text


def pair_ranking(found: list[dict], task: str) -> str:
    """Several pairs' diagnoses (each with "pair"), ranked by intervention rate on the sample, lowest
    first: the pair whose base needs its guide least. Each with its verdict and, where the task has
    gold answers, BlendIn's score on the sample (20 prompts: a sign of the order, not a measurement).

    >>> print(pair_ranking([{"pair": "a+b", "samples": 20, "intervention_rate": 0.25, "reliable": False, "score": 0.3},
    ...                     {"pair": "c+d", "samples": 20, "intervention_rate": 0.05, "reliable": True, "score": None}], "gsm8k"))
    pairs by intervention rate on gsm8k's sample (lowest first):
    | rank | pair | intervention rate | verdict | BlendIn's score on the sample |
    |---|---|---|---|---|
    | 1 | c+d | 5.0% | reliable | - |
    | 2 | a+b | 25.0% | unreliable | 0.300 |
    """
    ranked = sorted(found, key=lambda d: d["intervention_rate"] if d["samples"] else float("inf"))
    lines = [f"pairs by intervention rate on {task}'s sample (lowest first):",
             "| rank | pair | intervention rate | verdict | BlendIn's score on the sample |", "|---|---|---|---|---|"]
    for n, d in enumerate(ranked, 1):
        verdict = "nothing measured" if not d["samples"] else ("reliable" if d["reliable"] else "unreliable")
        rate = f"{100 * d['intervention_rate']:.1f}%" if d["samples"] else "-"
        score = "-" if d.get("score") is None else f"{d['score']:.3f}"
        lines.append(f"| {n} | {d['pair']} | {rate} | {verdict} | {score} |")
    return "\n".join(lines)
