"""Prometheus text-format metrics: requests, errors and latency by route, plus gauges."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Label values are bounded: a method outside these is "other", a route is a declared route's
#: template or "unmatched", a status a number; no request can add a label value of its own.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Counters and latency histograms keyed by (method, route); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self._sum: dict[tuple[str, str], float] = defaultdict(float)
        self._count: dict[tuple[str, str], int] = defaultdict(int)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one finished request (``route``: the matched route's template, never a raw path)."""
        method = method if method in METHODS else "other"
        status = status if 100 <= status <= 599 else 0
        key = (method, route)
        with self._lock:
            self._requests[(method, route, status)] += 1
            self._sum[key] += seconds
            self._count[key] += 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self._buckets[key][i] += 1

    def render(self) -> str:
        """All metrics in the Prometheus text exposition format (version 0.0.4)."""
        out = ["# HELP twin_http_requests_total HTTP requests by method, route and status.",
               "# TYPE twin_http_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                out.append(f'twin_http_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            out += ["# HELP twin_http_errors_total HTTP answers with status >= 400 by method and route.",
                    "# TYPE twin_http_errors_total counter"]
            errors: dict[tuple[str, str], int] = defaultdict(int)
            for (method, route, status), n in self._requests.items():
                if status >= 400:
                    errors[(method, route)] += n
            for (method, route), n in sorted(errors.items()):
                out.append(f'twin_http_errors_total{{method="{method}",route="{route}"}} {n}')
            out += ["# HELP twin_http_request_seconds Request latency by method and route.",
                    "# TYPE twin_http_request_seconds histogram"]
            for (method, route), counts in sorted(self._buckets.items()):
                labels = f'method="{method}",route="{route}"'
                for bound, n in zip(BUCKETS, counts):
                    out.append(f'twin_http_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
                out.append(f'twin_http_request_seconds_bucket{{{labels},le="+Inf"}} {self._count[(method, route)]}')
                out.append(f"twin_http_request_seconds_sum{{{labels}}} {self._sum[(method, route)]:.6f}")
                out.append(f"twin_http_request_seconds_count{{{labels}}} {self._count[(method, route)]}")
        for name, (help_text, read) in sorted(self.gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(out) + "\n"
