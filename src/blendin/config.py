"""One configuration object, shared by the CLI, the server and the evaluation harness.

    >>> BlendConfig(method="blendin", gamma=0.4).alpha_label
    'auto'

Validation happens here, at construction, so a bad value fails before any model loads.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace

from .errors import ConfigError, did_you_mean
from .placement import Placement, check_names, dtype_name

METHODS = ("base", "guide", "switch", "nudging", "blendin")
# the methods that decode with one model alone: no gamma, no blending, nothing the other model does
SOLO_METHODS = ("base", "guide")
SPECULATE = ("off", "guide", "lookup", "auto")  # who drafts for the base (``speculative``)
ON_GUIDE_FAILURE = ("degrade", "error")  # a guide that stops answering: the base goes on alone, or the row fails
BACKENDS = ("transformers", "llama.cpp")  # what runs a local model (``backends.hf``, ``backends.llama_cpp``)
BASE_PROMPTS = ("plain", "chat")
DEFAULT_BASE = "gemma-3-270m"
DEFAULT_GUIDE = "smollm2-135m-instruct"


@dataclass(frozen=True)
class PromptFormat:
    """How a user's text becomes each model's prompt.

    The base sees plain text: ``{system}\\n{question_prefix}{user}\\n{answer_cue}``.
    The guide sees ``[system, user]`` through its own tokenizer's chat template.
    ``base_prompt="chat"`` gives the base the chat template too, where it has one: for a base that is
    itself instruction-tuned. The default is plain text, as the method intends a pretrained base (and
    a pretrained model's files often carry a chat template it was never trained on).

    subtle: the cue ends with a newline. A chat template leaves the guide at the start of a line,
    so its first token has no leading space ('To'); after a bare "Answer:" that token would glue
    onto the cue ("Answer:To"). Starting both models' answers at a line start keeps them aligned.
    """

    system: str = "Answer the question by walking through the reasoning step by step."
    question_prefix: str = "Question: "
    answer_cue: str = "Answer:\n"
    base_prompt: str = "plain"  # "chat": the base too reads its chat template (an instruction-tuned base)

    def __post_init__(self):
        if self.base_prompt not in BASE_PROMPTS:
            raise ConfigError(
                f"unknown base prompt '{self.base_prompt}'{did_you_mean(self.base_prompt, BASE_PROMPTS)}; "
                f"choose one of: {', '.join(BASE_PROMPTS)}"
            )


@dataclass(frozen=True)
class RemoteSpec:
    """A model behind an OpenAI-compatible server; the model spec (--base/--guide) names its tokenizer.

    top_k: logprobs asked per position (vLLM allows 20 unless started with --max-logprobs);
    chunk: the most greedy tokens asked per request (1 = one request per token);
    concurrency: requests in flight at once when many prompts decode together;
    timeout / retries: seconds a request may take, and tries after the first (with backoff) before the
    model counts as down (``errors.ModelUnavailable``).
    """

    url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    top_k: int = 20
    chunk: int = 8
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 3

    def __post_init__(self):
        if not self.url or not self.model:
            raise ConfigError("a remote model needs both a URL (--base-url) and a model name (--base-model)")
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ConfigError(f"top_k must be a whole number >= 1, got {self.top_k!r}")
        if not isinstance(self.chunk, int) or self.chunk < 1:
            raise ConfigError(f"chunk must be a whole number >= 1, got {self.chunk!r}")
        if not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ConfigError(f"concurrency must be a whole number >= 1, got {self.concurrency!r}")
        if not _finite(self.timeout) or self.timeout <= 0:
            raise ConfigError(f"timeout must be a number of seconds > 0, got {self.timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ConfigError(f"retries must be a whole number >= 0, got {self.retries!r}")


@dataclass(frozen=True)
class GuideSpec:
    """One guide beyond the first (``BlendConfig.more_guides``): a model spec, run here or behind a
    server (``remote``; the spec then names its tokenizer, as ``--guide`` with ``--guide-url``)."""

    model: str
    remote: RemoteSpec | None = None

    @property
    def label(self) -> str:
        """How results name this guide: its spec, and its server's address for a remote one."""
        return self.model if self.remote is None else f"{self.model}@{self.remote.url}"

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError(f"a guide is named by a model spec (a name, a folder, a GGUF file or a Hugging Face id), got {self.model!r}")


# adaptive gamma (the reference's rule, with a measured gap): gamma' = min(gamma * (1 + 0.5 * gap), cap)
GAP_SLOPE, GAMMA_CAP = 0.5, 0.6


@dataclass(frozen=True)
class BlendConfig:
    """What to decode and how. ``alpha=None`` means BlendIn's adaptive alpha.

    method: base | guide | switch | nudging | blendin.
    gamma: the base decides alone when its top-1 probability is >= gamma.
    temperature 0 is greedy; top_p and seed apply when sampling.
    nudge_chunk: how many tokens the guide drafts at once under nudging (the paper uses 16).
    base_remote / guide_remote: serve that model from an OpenAI-compatible server (see RemoteSpec).
    device / dtype: where local models run and in which precision (``placement.Placement``; ``auto``
    takes a GPU where there is one); guide_device / guide_dtype set the guide's apart.
    guide / more_guides: the guide, and any more guides (``GuideSpec`` or a model spec each); a list
    given as ``guide`` is split into the two (``BlendConfig(guide=["a", "b"])``). ``guides`` lists all.
    Several guides blend under blendin and switch (``blend.guide_weights``); the guide method and
    nudging let one guide write, and take one.
    Mitigations, each off by default (``mitigations``): max_intervention_rate (the base decides alone
    while the rate so far is above it), agreement_top_k (a guide counts only when its top token is among
    the base's top k), reliability (each guide's weight scaled by its running reliability),
    retire_below / retire_after (stop consulting a guide whose reliability is below the floor after
    that many consultations), capability_gap (the measured guide-minus-base score on a sample, which
    moves gamma: ``effective_gamma``).
    turn_stop: end the answer where the base's plain-text format starts the next turn, a line
    beginning with the question prefix ("\\nQuestion:"), as if it were one of ``stop``; a pretrained
    base would otherwise write the user's next question and answer it too. ``stops`` lists what applies.
    backend / guide_backend: what runs local models: transformers (float32 or half precision, any
    device) or llama.cpp (a GGUF file as it is, quantized, on the CPU; ``threads``).
    speculate: off, or who drafts tokens for the base to read in one pass (``speculative``): the
    guide (one tokenizer), prompt lookup, or auto (at each pass the guide if its draft pays by the
    pass costs measured here, else lookup if its does, else none). The tokens are the same as off; only the passes differ.
    on_guide_failure: a guide that stops answering while decoding (``errors.ModelUnavailable``: a
    server down, a timeout, a 5xx): "degrade" retires it for the rest of the answer, the base deciding
    alone where it would have guided (the result's ``guides[k]`` says ``failed_at`` and ``error``,
    ``held`` counts the steps); "error" fails the row (eval's default: an unguided answer is never
    scored as the method's).
    repeat_stop: end the answer once it has said the same thing twice in a row (``repetition``:
    stop_reason "repeat"); the demo and the server's page turn it on, generate and eval only when asked.
    """

    base: str = DEFAULT_BASE
    guide: str = DEFAULT_GUIDE
    method: str = "blendin"
    gamma: float = 0.4
    alpha: float | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    nudge_chunk: int = 16
    prompt: PromptFormat = field(default_factory=PromptFormat)
    base_remote: RemoteSpec | None = None
    guide_remote: RemoteSpec | None = None
    trace_top: int = 0  # keep each step's top-k tokens of each model (for --trace-html); 0 = none
    turn_stop: bool = True  # stop at the base's next turn ("\nQuestion:"); see ``stops``
    device: str = "auto"  # auto | cpu | cuda | cuda:N, for local models (see ``placement``)
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    guide_device: str | None = None  # the guide's own, where it differs from the base's (None: the same)
    guide_dtype: str | None = None
    more_guides: tuple = ()  # GuideSpec (or model specs), consulted with ``guide``
    max_intervention_rate: float | None = None
    agreement_top_k: int | None = None
    reliability: bool = False
    retire_below: float | None = None
    retire_after: int = 8
    capability_gap: float | None = None
    speculate: str = "off"  # off | guide | lookup | auto: draft tokens for the base to read in one pass
    backend: str = "transformers"  # transformers | llama.cpp: what runs local models (``BACKENDS``)
    guide_backend: str | None = None  # the guides' own, where it differs from the base's (None: the same)
    threads: int | None = None  # llama.cpp's CPU threads (None: the machine's physical cores)
    context: int | None = None  # llama.cpp's cache cells per row (None: 4096, or the model's trained length if less)
    profile: object | None = None  # a ``profile.Profile``: each guide's weight times the reliability a sample proved
    on_guide_failure: str = "degrade"  # a guide that stops answering: "degrade" (the base decides alone) or "error"
    repeat_stop: bool = False  # stop an answer that has begun repeating itself (``repetition.loop_period``)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown method '{self.method}'{did_you_mean(self.method, METHODS)}; "
                f"choose one of: {', '.join(METHODS)}"
            )
        _check_range("gamma", self.gamma, 0.0, 1.0)
        if self.alpha is not None:
            _check_range("alpha", self.alpha, 0.0, 1.0, hint="or None (BlendIn's adaptive alpha)")
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a whole number >= 1, got {self.max_new_tokens!r}")
        if not _finite(self.temperature) or self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 is greedy), got {self.temperature!r}")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.nudge_chunk, int) or self.nudge_chunk < 1:
            raise ConfigError(f"nudge_chunk must be a whole number >= 1, got {self.nudge_chunk!r}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        object.__setattr__(self, "stop", tuple(self.stop))
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            raise ConfigError("stop strings must be non-empty text")
        object.__setattr__(self, "dtype", dtype_name(self.dtype))
        object.__setattr__(self, "guide_dtype", dtype_name(self.guide_dtype))
        check_names(self.device, self.dtype)
        check_names(self.guide_device or self.device, self.guide_dtype or self.dtype, flag="guide_device")
        self._check_guides()
        self._check_mitigations()
        if self.speculate not in SPECULATE:
            raise ConfigError(f"unknown speculate '{self.speculate}'{did_you_mean(str(self.speculate), SPECULATE)}; "
                              f"choose one of: {', '.join(SPECULATE)}")
        self._check_backends()
        if not isinstance(self.repeat_stop, bool):
            raise ConfigError(f"repeat_stop must be True or False, got {self.repeat_stop!r}")
        if self.on_guide_failure not in ON_GUIDE_FAILURE:
            raise ConfigError(f"unknown on_guide_failure '{self.on_guide_failure}'; choose one of: {', '.join(ON_GUIDE_FAILURE)}")
        if not isinstance(self.turn_stop, bool):
            raise ConfigError(f"turn_stop must be True or False (stop at the base's next turn, or not), got {self.turn_stop!r}")

    def _check_guides(self) -> None:
        guide, more = self.guide, self.more_guides
        if isinstance(guide, (list, tuple)):  # BlendConfig(guide=["a", "b"]): the first, then the rest
            if not guide:
                raise ConfigError("guide needs at least one model")
            guide, more = guide[0], (*guide[1:], *more)
        if isinstance(guide, GuideSpec):
            if guide.remote is not None and self.guide_remote is None:
                object.__setattr__(self, "guide_remote", guide.remote)
            guide = guide.model
        if isinstance(more, (str, GuideSpec)):
            more = (more,)
        specs = tuple(g if isinstance(g, GuideSpec) else GuideSpec(g) for g in more)
        object.__setattr__(self, "guide", guide)
        object.__setattr__(self, "more_guides", specs)
        names = [GuideSpec(guide, self.guide_remote).label, *(g.label for g in specs)]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ConfigError(f"the guide '{twice}' is given twice; give each guide once")
        if specs and self.method in ("guide", "nudging"):
            raise ConfigError(f"method '{self.method}' lets one guide write, and {len(names)} guides are given; "
                              "give one --guide, or use blendin or switch, which blend several")

    def _check_backends(self) -> None:
        for flag, name in (("backend", self.backend), ("guide_backend", self.guide_backend)):
            if name is not None and name not in BACKENDS:
                raise ConfigError(f"unknown {flag} '{name}'{did_you_mean(str(name), BACKENDS)}; choose one of: {', '.join(BACKENDS)}")
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1):
            raise ConfigError(f"threads must be a whole number >= 1 (llama.cpp's CPU threads), got {self.threads!r}")
        if self.context is not None and (not isinstance(self.context, int) or isinstance(self.context, bool) or self.context < 16):
            raise ConfigError(f"context must be a whole number >= 16 (llama.cpp's cache cells per row), got {self.context!r}")
        for role in ("base", "guide"):
            placement = self.placement(role)
            if self.backend_for(role) == "llama.cpp" and (placement.device not in ("auto", "cpu") or placement.dtype not in ("auto", "float32")):
                flags = "--device/--dtype" if role == "base" else "--guide-device/--guide-dtype"
                raise ConfigError(f"{flags} {placement.device}/{placement.dtype} are the transformers backend's; llama.cpp runs the "
                                  f"GGUF's own quantization on the CPU: drop them, or use --{'guide-' if role == 'guide' else ''}backend transformers")

    def backend_for(self, role: str) -> str:
        """What runs the ``role`` ("base" or "guide") model when it is local: ``backend``, or the guides' own."""
        return (self.guide_backend or self.backend) if role == "guide" else self.backend

    def _check_mitigations(self) -> None:
        if self.max_intervention_rate is not None:
            _check_range("max_intervention_rate", self.max_intervention_rate, 0.0, 1.0, hint="(the reference uses 0.15)")
        if self.agreement_top_k is not None and (not isinstance(self.agreement_top_k, int) or isinstance(self.agreement_top_k, bool)
                                                 or self.agreement_top_k < 1):
            raise ConfigError(f"agreement_top_k must be a whole number >= 1 (the reference uses 5), got {self.agreement_top_k!r}")
        if not isinstance(self.reliability, bool):
            raise ConfigError(f"reliability must be True or False, got {self.reliability!r}")
        if self.reliability and self.method == "nudging":  # nudging's guide writes whole words: no weight to scale
            raise ConfigError("reliability weighting scales each guide's weight in a mixture, and nudging lets the guide write "
                              "whole words with no weight; drop --reliability, or use blendin or switch (in an eval grid: "
                              "take nudging out of --method, or run it apart without --reliability)")
        if self.retire_below is not None:
            _check_range("retire_below", self.retire_below, 0.0, 1.0)
        if not isinstance(self.retire_after, int) or isinstance(self.retire_after, bool) or self.retire_after < 1:
            raise ConfigError(f"retire_after must be a whole number >= 1, got {self.retire_after!r}")
        if self.capability_gap is not None:
            _check_range("capability_gap", self.capability_gap, -1.0, 1.0, hint="(a guide's score minus the base's, on one scale)")
        self._check_profile()

    def _check_profile(self) -> None:
        """A profile must be one (``profile.Profile``), fitted for these models and this rule, under a
        method that weighs guides; each refusal names the field that differs and the fix."""
        if self.profile is None:
            return
        if isinstance(self.profile, (str, os.PathLike)):  # a file's path: read it here, before any model loads
            from .profile import Profile

            object.__setattr__(self, "profile", Profile.load(self.profile))
        if not callable(getattr(self.profile, "mismatch", None)):
            raise ConfigError(f"profile must be a blendin.profile.Profile (Profile.load(path)), got {type(self.profile).__name__}")
        source = getattr(self.profile, "source", "") or "the profile"
        if self.method == "nudging":  # as reliability: nudging's guide writes whole words, no weight to scale
            raise ConfigError(f"--profile {source} scales each guide's weight in a mixture, and nudging lets the guide write whole "
                              "words with no weight; drop --profile, or use blendin or switch")
        if self.method in SOLO_METHODS:  # one model writes alone: no guide is weighed, the profile is idle
            return
        why = self.profile.mismatch(self)
        if why is not None:
            raise ConfigError(f"--profile {source} was fitted for another run ({why}); fit one for this run with "
                              "blendin diagnose ... --save-profile FILE, or drop --profile")

    @property
    def guides(self) -> tuple[GuideSpec, ...]:
        """Every guide, the first (``guide``, ``guide_remote``) first."""
        return (GuideSpec(self.guide, self.guide_remote), *self.more_guides)

    @property
    def guide_label(self) -> str:
        """The guides' names as one text: 'a' for one guide, 'a + b' for two."""
        return " + ".join(g.label if len(self.more_guides) else g.model for g in self.guides)

    @property
    def effective_gamma(self) -> float:
        """gamma as the policy uses it: moved by ``capability_gap`` where one is given,
        min(gamma * (1 + 0.5 * gap), max(gamma, 0.6)) (the reference's rule; see docs/decisions.md).

            >>> BlendConfig(gamma=0.4, capability_gap=0.5).effective_gamma, BlendConfig(gamma=0.4, capability_gap=-0.2).effective_gamma
            (0.5, 0.36)
        """
        if self.capability_gap is None:
            return self.gamma
        return round(min(self.gamma * (1 + GAP_SLOPE * self.capability_gap), max(self.gamma, GAMMA_CAP)), 6)

    @property
    def mitigated(self) -> bool:
        """Whether any mitigation (or reliability weighting) is on: steps then record each guide's part."""
        return (self.max_intervention_rate is not None or self.agreement_top_k is not None or self.reliability
                or self.retire_below is not None or self.profile is not None)

    def placement(self, role: str) -> Placement:
        """Where the ``role`` ("base" or "guide") model runs: ``device``/``dtype``, or the guide's own."""
        if role == "guide":
            return Placement(self.guide_device or self.device, self.guide_dtype or self.dtype)
        return Placement(self.device, self.dtype)

    @property
    def alpha_label(self) -> str | float:
        return "auto" if self.alpha is None else self.alpha

    @property
    def uses_base(self) -> bool:
        return self.method != "guide"

    @property
    def uses_guide(self) -> bool:
        return self.method != "base"

    @property
    def turn_marker(self) -> str | None:
        """What begins the base's next turn in its plain-text prompt: the question prefix without its
        spaces ('Question:'). None where ``turn_stop`` stops nothing: it is off, the prefix is empty,
        or the base reads its chat template (``base_prompt="chat"``), whose end token ends the turn."""
        if not self.turn_stop or self.prompt.base_prompt != "plain":
            return None
        return self.prompt.question_prefix.strip() or None

    @property
    def stops(self) -> tuple[str, ...]:
        """Every stop string a generation applies: ``stop``, then the next turn at a line start
        ('\\nQuestion:'), unless one of ``stop`` occurs in it already (that one fires first).

            >>> BlendConfig().stops, BlendConfig(stop=("Question:",)).stops, BlendConfig(turn_stop=False).stops
            (('\\nQuestion:',), ('Question:',), ())
        """
        marker = self.turn_marker
        if marker is None:
            return self.stop
        turn = "\n" + marker
        return self.stop if any(s in turn for s in self.stop) else (*self.stop, turn)

    @property
    def stops_at_start(self) -> tuple[str, ...]:
        """What stops an answer that begins with it: the turn marker, where the answer itself starts
        at a line start (the answer cue ends with a newline), so that 'Question: ...' written at once
        is the next turn too, not only after a newline."""
        cue, marker = self.prompt.answer_cue, self.turn_marker
        return (marker,) if marker and (not cue or cue.endswith("\n")) else ()

    def with_(self, **changes) -> "BlendConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def parse_alpha(text: str) -> float | None:
    """'auto' -> None; '0.3' -> 0.3; anything else -> ConfigError naming the fix."""
    if text.strip().lower() == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"alpha must be a number in [0, 1] or 'auto' (BlendIn's adaptive alpha), got '{text}'") from None


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _check_range(name, value, lo, hi, hint=""):
    if not _finite(value) or not lo <= value <= hi:
        extra = f" {hint}" if hint else ""
        raise ConfigError(f"{name} must be a number in [{lo:g}, {hi:g}]{extra}, got {value!r}")
