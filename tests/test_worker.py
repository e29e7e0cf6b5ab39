"""The worker's job parsing: single jobs and batches; bad ones refused with the reason."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from lecp.worker import MAX_BATCH, parse_job


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
