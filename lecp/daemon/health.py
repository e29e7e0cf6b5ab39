# -*- test-case-name: tests.test_daemon_services -*-
"""
The daemon's HTTP face on 127.0.0.1: C{/alive} answers 200 at once (for chkservd, whose probe is
a bare HTTP/1.0 request), C{/health} is JSON with each service's state, last and next run, counts
and last error (503 when one is failing), C{/metrics} is Prometheus text.
"""

from __future__ import annotations

import json

from twisted.web.resource import Resource

FAILING = "failing"


def _metric_name(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


class HealthResource(Resource):
    """Serves /alive, /health and /metrics for C{services} (name → TimedService)."""

    isLeaf = True

    def __init__(self, services: dict, clock, started: float, recorder=None):
        super().__init__()
        self.services, self.clock, self.started, self.recorder = services, clock, started, recorder

    def render_GET(self, request):
        path = request.path.rstrip(b"/") or b"/"
        if path == b"/alive":
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"OK\n"
        if path == b"/health":
            return self._health(request)
        if path == b"/metrics":
            request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
            return self._metrics().encode()
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Not found: try /alive, /health or /metrics\n"

    def _health(self, request) -> bytes:
        services = {name: service.status.to_json() for name, service in self.services.items()}
        failing = sorted(name for name, status in services.items() if status["state"] == FAILING)
        body = {"status": "failing" if failing else "ok", "failing": failing, "now": self.clock.seconds(),
                "uptime": self.clock.seconds() - self.started, "services": services}
        request.setResponseCode(503 if failing else 200)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body, indent=1, sort_keys=True).encode()

    def _metrics(self) -> str:
        lines = []

        def metric(name, kind, help_text, samples):
            lines.append(f"# HELP lecp_{name} {help_text}")
            lines.append(f"# TYPE lecp_{name} {kind}")
            for labels, value in samples:
                label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
                lines.append(f"lecp_{name}{{{label_text}}} {value}" if label_text else f"lecp_{name} {value}")

        renewal = self.services.get("renewal")
        counts = renewal.status.counts if renewal else {}
        metric("certificates", "gauge", "Certificates by state at the last scan.",
               [({"state": state}, n) for state, n in sorted((counts.get("by_state") or {}).items())])
        metric("accounts", "gauge", "Accounts scanned at the last pass.", [({}, counts.get("accounts", 0))])
        metric("scan_duration_seconds", "gauge", "Duration of the last renewal scan.", [({}, counts.get("scan_seconds", 0))])
        if self.recorder is not None:
            metric("jobs_total", "counter", "Jobs run in workers, by job and outcome.",
                   [({"job": job, "outcome": outcome}, n) for (job, outcome), n in sorted(self.recorder.counters.items())])
            metric("mails_total", "counter", "E-mails sent and failed.",
                   [({"result": "sent"}, self.recorder.mailer.sent), ({"result": "failed"}, self.recorder.mailer.failed)])
        metric("service_up", "gauge", "1 when the service is not failing.",
               [({"service": name}, 0 if s.status.state == FAILING else 1) for name, s in sorted(self.services.items())])
        metric("service_runs_total", "counter", "Passes run by each service.",
               [({"service": name}, s.status.runs) for name, s in sorted(self.services.items())])
        metric("uptime_seconds", "gauge", "Seconds since the daemon started.", [({}, round(self.clock.seconds() - self.started, 3))])
        return "\n".join(lines) + "\n"
