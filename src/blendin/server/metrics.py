"""``GET /metrics``: the server's counters in Prometheus' text format (prometheus-client).

    metrics = Metrics(engine)               # one registry per app, so several servers in one process never mix
    metrics.request("/v1/completions", 200, 0.8)
    metrics.answers(results)                 # finished rows: tokens, interventions, their rate
    body, content_type = metrics.render()

What a deployer watches, under ``blendin_``:

    requests_total{route, status}            HTTP requests answered (route: a served path, else "other")
    request_latency_seconds{route}           request to last byte (a stream's whole length)
    time_to_first_token_seconds              request to the first generated text of any of its rows
    generated_tokens_total                   tokens of finished answers
    interventions_total                      of them, tokens where the guide was consulted
    intervention_rate                        per answer: the paper's diagnostic (above ~0.2 a pair tends to fail)
    queue_depth                              rows waiting to join the batch
    running_rows, batch_occupancy            rows decoding now, and over the batch size
"""

from __future__ import annotations

ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics", "/tokenize", "/detokenize", "/v1/profile")
RATE_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    def __init__(self, engine, profile=None, ledger=None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self._requests = Counter("blendin_requests", "HTTP requests answered, by route and status", ["route", "status"], registry=r)
        self._latency = Histogram("blendin_request_latency_seconds", "seconds from a request to its last byte", ["route"],
                                  buckets=SECONDS_BUCKETS, registry=r)
        self._first = Histogram("blendin_time_to_first_token_seconds", "seconds from a request to its first generated text",
                                buckets=SECONDS_BUCKETS, registry=r)
        self._tokens = Counter("blendin_generated_tokens", "tokens of finished answers", registry=r)
        self._interventions = Counter("blendin_interventions", "tokens of finished answers where the guide was consulted", registry=r)
        self._rate = Histogram("blendin_intervention_rate", "intervention rate of each finished answer", buckets=RATE_BUCKETS, registry=r)
        Gauge("blendin_queue_depth", "rows waiting to join the batch", registry=r).set_function(lambda: engine.waiting)
        Gauge("blendin_running_rows", "rows decoding now", registry=r).set_function(lambda: engine.running)
        Gauge("blendin_batch_occupancy", "rows decoding now over the batch size", registry=r).set_function(
            lambda: engine.running / engine.batch_size)
        self.ledger = ledger
        self._consulted = Counter("blendin_guide_consultations", "uncertain steps where each guide ran, over finished answers",
                                  ["guide"], registry=r)
        self._guided = Counter("blendin_guide_interventions", "tokens each guide's guidance went into, over finished answers",
                               ["guide"], registry=r)
        self._failed = Counter("blendin_guide_failures", "finished answers in which each guide stopped answering (the base went on alone)",
                               ["guide"], registry=r)
        if profile is not None:  # --profile: each guide's weight multiplier, as the sample proved it
            reliability = Gauge("blendin_guide_reliability", "each guide's reliability from --profile (its weight's multiplier; 0: not consulted)",
                                ["guide"], registry=r)
            for guide, value in zip(profile.guides, profile.reliabilities):
                reliability.labels(guide).set(value)

    def request(self, path: str, status: int | None, seconds: float) -> None:
        route = path if path in ROUTES else "other"  # an unknown path is one label, not one per path
        self._requests.labels(route, "-" if status is None else str(status)).inc()
        self._latency.labels(route).observe(seconds)

    def first_token(self, seconds: float) -> None:
        self._first.observe(seconds)

    def answers(self, results) -> None:
        """Count finished rows (None: a row that did not finish is left out). A scored prompt (echo,
        prompt_logprobs: ``scoring.ScoredResult``) is no answer: its forced tokens are not counted as
        generated, nor its positions in the intervention rate or a guide's record."""
        for r in results:
            if r is None or getattr(r, "scored", None) is not None:
                continue
            self._tokens.inc(r.tokens)
            self._interventions.inc(r.interventions)
            for g in r.guides or ():
                self._consulted.labels(g["guide"]).inc(g["consulted"])
                self._guided.labels(g["guide"]).inc(g["interventions"])
                if g.get("failed_at") is not None:
                    self._failed.labels(g["guide"]).inc()
            if self.ledger is not None:
                self.ledger.observe(r.guides)
            if r.tokens:
                self._rate.observe(r.interventions / r.tokens)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
