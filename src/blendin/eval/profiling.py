"""Fitting a reliability profile on a labelled sample (``blendin diagnose --save-profile FILE``).

    profile, runs = fit_profile(pair, task, items, config, batch_size=16)
    print(profile_text(profile))
    profile.save("smollm2-on-arc.json")

The sample is decoded under the base alone, each guide alone, and BlendIn with each guide alone
(one guide: BlendIn as configured); every answer is scored. Per guide the evidence is the paired
comparison of its BlendIn with the base alone (and of the guide alone with the base alone, for the
reader), and r_k follows ``profile``'s rule: the posterior probability that its guidance helps,
times, with several guides, the probability that its guidance beats each other guide's.
"""

from __future__ import annotations

from ..config import BlendConfig
from ..errors import ConfigError
from ..profile import OFF_BELOW, Profile, decision, help_probability

SCORED = ("number", "letter", "refusal")  # the tasks whose answers are judged without a judge model
TOO_FEW = 10  # disagreements with the base below which the sample cannot tell help from harm


def check_profileable(task) -> None:
    """ConfigError unless ``task`` has gold answers to fit on (before any model loads)."""
    from .tasks import TASKS

    if task.scoring not in SCORED:
        scored = ", ".join(t.name for t in TASKS.values() if t.scoring in SCORED)
        raise ConfigError(f"--save-profile fits on answers it can score, and {task.name} is scored by a judge model; "
                          f"fit the profile on a task with gold answers ({scored})")


def fit_profile(pair, task, items: list[dict], config: BlendConfig, batch_size: int = 16, progress=None) -> tuple[Profile, dict]:
    """The profile ``config``'s guides earn on ``items`` and the runs it read ({name: results})."""
    from ..pair import Pair
    from .diagnose import decode
    from .runner import score

    check_profileable(task)
    prompts = [task.render(it) for it in items]
    base_cfg = config.with_(method="base", profile=None)
    runs = {"base": decode(pair, task, items, prompts, base_cfg, batch_size, progress, "profile: base alone")}
    names = [g.label for g in config.guides]
    for k, (spec, model, bridge) in enumerate(zip(config.guides, pair.guides, pair.bridges)):
        single = Pair(base=pair.base, guide=model, bridge=bridge)
        solo = config.with_(guide=spec.model, guide_remote=spec.remote, more_guides=(), profile=None)
        runs[f"guide {k}"] = decode(single, task, items, prompts, solo.with_(method="guide"), batch_size, progress, f"profile: {names[k]} alone")
        runs[f"blend {k}"] = decode(single, task, items, prompts, solo.with_(method="blendin"), batch_size, progress,
                                            f"profile: blendin with {names[k]}")
    scores = {name: [None if r.error else score(task, it, r.text)[1] for it, r in zip(items, results)] for name, results in runs.items()}
    rates = {k: _rate([r for r in runs[f"blend {k}"] if not r.error]) for k in range(len(names))}
    sample = {"items": len(items), "first_item": items[0].get("id", items[0].get("idx")) if items else None}
    return build_profile(config.base, names, task.name, config.gamma, config.alpha_label, scores, rates, sample), runs


def build_profile(base: str, guides: list[str], task: str, gamma: float, alpha, scores: dict, rates: dict, sample: dict) -> Profile:
    """The profile from each run's per-item scores ({"base", "guide K", "blend K": [True/False/None, ...]},
    one entry per item; an item any run left unscored is left out) and each blend's intervention rate
    ({K: rate}). The same whether the runs were decoded now (``fit_profile``) or read from an eval's
    rows (``benchmarks/profile_study.py``)."""
    keep = [i for i in range(len(scores["base"])) if all(s[i] is not None for s in scores.values())]
    outcome = {name: [bool(s[i]) for i in keep] for name, s in scores.items()}
    evidence = [_evidence(outcome, k, rates[k], len(guides)) for k in range(len(guides))]
    reliabilities = tuple(_reliability(e) for e in evidence)
    for e, r in zip(evidence, reliabilities):
        e["decision"] = "off" if r == 0.0 else e["decision"]
    return Profile(base=base, guides=tuple(guides), reliabilities=reliabilities, task=task, gamma=gamma, alpha=alpha,
                   evidence=tuple(evidence), sample={**sample, "scored": len(keep)})


def _rate(results: list) -> float:
    tokens = sum(r.tokens for r in results)
    return round(sum(r.interventions for r in results) / tokens, 6) if tokens else 0.0


def _evidence(outcome: dict, k: int, rate: float, n_guides: int) -> dict:
    """Guide ``k``'s evidence: scores, paired differences against the base alone (with the items each
    side alone got right), the blend's intervention rate, P(help), and with several guides P(its
    blend beats each other guide's)."""
    from .compare import paired_difference

    base, alone, blend = outcome["base"], outcome[f"guide {k}"], outcome[f"blend {k}"]
    vs_base, alone_vs_base = paired_difference(blend, base), paired_difference(alone, base)
    out = {"n": len(base), "score_base": _mean(base), "score_guide_alone": _mean(alone), "score_blend": _mean(blend),
           "blend_minus_base": _pair(vs_base), "guide_alone_minus_base": _pair(alone_vs_base),
           "intervention_rate": rate,
           "p_help": round(help_probability(vs_base["a_only"], vs_base["b_only"]), 6)}
    out["decision"] = decision(out["p_help"])
    if n_guides > 1:
        beats = {j: paired_difference(blend, outcome[f"blend {j}"]) for j in range(n_guides) if j != k}
        out["p_beats"] = {str(j): round(help_probability(d["a_only"], d["b_only"]), 6) for j, d in beats.items()}
    return out


def _reliability(e: dict) -> float:
    r = e["p_help"]
    for p in (e.get("p_beats") or {}).values():
        r *= p
    return 0.0 if r < OFF_BELOW else round(r, 6)


def _pair(d: dict) -> dict:
    return {"difference": None if d["difference"] is None else round(d["difference"], 6),
            "ci": None if d["ci"] is None else [round(x, 6) for x in d["ci"]], "only_first_right": d["a_only"], "only_base_right": d["b_only"]}


def _mean(xs: list) -> float | None:
    return round(sum(xs) / len(xs), 6) if xs else None


def profile_text(profile: Profile, path=None) -> str:
    """Per guide, the evidence and the decision in words; the flag to use; a warning where the sample
    is too small to decide."""
    lines = [f"reliability profile: {profile.base} on {profile.task}, {profile.sample.get('scored')} items scored"]
    for name, r, e in zip(profile.guides, profile.reliabilities, profile.evidence):
        d = e["blend_minus_base"]
        wins, losses = d["only_first_right"], d["only_base_right"]
        ci = "" if d["ci"] is None else f" [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]"
        said = {"helps": f"helps this base on this task: weight {r:.2f}", "hurts": f"hurts: weight {r:.2f}",
                "no clear effect": f"no clear effect: weight {r:.2f}", "off": "off (not consulted)"}[e["decision"]]
        lines.append(f"  guide {name} {said}; BlendIn with it minus the base alone {d['difference']:+.3f}{ci} on {e['n']} items "
                     f"(right where the base was wrong: {wins}, wrong where it was right: {losses}; P(guidance helps) {e['p_help']:.2f}); "
                     f"scores: base {e['score_base']:.2f}, guide alone {e['score_guide_alone']:.2f}, BlendIn {e['score_blend']:.2f}; "
                     f"interventions {100 * e['intervention_rate']:.1f}%")
        if e.get("p_beats"):
            lines.append("    P(its guidance beats the other guides'): " + ", ".join(
                f"{profile.guides[int(j)]} {p:.2f}" for j, p in e["p_beats"].items()))
        if wins + losses < TOO_FEW:
            lines.append(f"    warning: BlendIn and the base alone disagree on only {wins + losses} items; too few to tell help from "
                         f"harm (the weight stays near 0.5): fit on more items (--limit {max(100, 2 * e['n'])})")
    if path is not None:
        lines.append(f"use it: --profile {path}")
    return "\n".join(lines)
