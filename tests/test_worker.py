"""The worker's job parsing (single jobs and batches; bad ones refused with the reason) and batch running."""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from lecp.outcome import Refused
from lecp.worker import MAX_BATCH, parse_job, run_batch


class GatedJobs:
    """Renewals that finish when the test says, raising what the test planted."""

    def __init__(self, raises=None):
        self.started, self.gates, self.raises = [], {}, raises or {}

    async def renew(self, vhost):
        self.started.append(vhost)
        self.gates[vhost] = Deferred()
        await self.gates[vhost]
        if vhost in self.raises:
            raise self.raises[vhost]
        return Renewed(vhost)


class Renewed:
    def __init__(self, vhost):
        self.vhost = vhost

    def to_json(self):
        return {"outcome": "renewed", "vhost": self.vhost}


class ParseJobTests(SynchronousTestCase):
    def test_single_job(self):
        self.assertEqual(parse_job('{"job": "renew", "vhost": "a.test"}'), ("renew", {"vhost": "a.test"}))
        self.assertEqual(parse_job('{"job": "remove_reuse", "vhost": "a.test"}'), ("remove_reuse", {"target": "a.test"}))

    def test_batch(self):
        """A batch is its jobs, each parsed as a single job would be."""
        text = json.dumps({"job": "batch", "jobs": [{"job": "renew", "vhost": "a.test", "optional_names": ["x.a.test"]},
                                                    {"job": "resume", "vhost": "b.test"}]})
        self.assertEqual(parse_job(text), ("batch", {"jobs": [("renew", {"vhost": "a.test", "optional_names": ["x.a.test"]}),
                                                              ("resume", {"vhost": "b.test"})]}))

    def test_bad_jobs_refused_with_the_reason(self):
        cases = {
            "{nope": "not JSON",
            '{"job": "format_disk"}': "one of issue",
            '{"job": "renew", "vhost": "a.test", "home": "/root"}': "unknown argument(s) for renew: home",
            '{"job": "batch", "jobs": []}': f"1 to {MAX_BATCH} jobs",
            '{"job": "batch", "jobs": [{"job": "batch", "jobs": []}]}': "one of issue",
            json.dumps({"job": "batch", "jobs": [{"job": "resume", "vhost": "a"}] * (MAX_BATCH + 1)}): f"1 to {MAX_BATCH} jobs",
            '{"job": "batch", "jobs": [{"job": "renew", "vhost": "a"}], "as": "root"}': "a batch is",
        }
        for text, reason in cases.items():
            with self.assertRaises(ValueError) as caught:
                parse_job(text)
            self.assertIn(reason, str(caught.exception), text)


class RunBatchTests(SynchronousTestCase):
    """A batch's jobs overlap up to a limit; each outcome lands in its job's place."""

    def test_up_to_the_limit_at_once_outcomes_in_order(self):
        jobs = GatedJobs()
        vhosts = [f"{i}.test" for i in range(6)]
        d = Deferred.fromCoroutine(run_batch(jobs, [("renew", {"vhost": v}) for v in vhosts], parallel=4))
        self.assertEqual(jobs.started, vhosts[:4])
        jobs.gates["2.test"].callback(None)
        self.assertEqual(jobs.started, vhosts[:5])
        for vhost in reversed(vhosts[:5]):
            if not jobs.gates[vhost].called:
                jobs.gates[vhost].callback(None)
        self.assertEqual(jobs.started, vhosts)
        self.assertNoResult(d)
        jobs.gates["5.test"].callback(None)
        self.assertEqual([o["vhost"] for o in self.successResultOf(d)], vhosts)

    def test_a_job_that_fails_does_not_stop_the_others(self):
        jobs = GatedJobs(raises={"a.test": Refused("no such website", 404), "b.test": RuntimeError("boom")})
        d = Deferred.fromCoroutine(run_batch(jobs, [("renew", {"vhost": v}) for v in ("a.test", "b.test", "c.test")]))
        for gate in list(jobs.gates.values()):
            gate.callback(None)
        outcomes = self.successResultOf(d)
        self.assertEqual([(o["outcome"], o["vhost"]) for o in outcomes],
                         [("refused", "a.test"), ("error", "b.test"), ("renewed", "c.test")])
        self.assertIn("boom", outcomes[1]["message"])
