"""Tests for the daemon's services on a Clock: passes, intervals, backoff, mails, health, makeService."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import attrs

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lecp.config import Config
from lecp.cpanel.models import Account
from lecp.daemon.health import HealthResource
from lecp.daemon.outcomes import Recorder
from lecp.daemon.renewal import RenewalService
from lecp.daemon.state import State
from lecp.daemon.timed import TimedService
from lecp.keys import certificate_to_pem, generate_private_key, make_self_signed_certificate, private_key_to_pem
from lecp.outcome import FAILED, ISSUED, Outcome
from lecp.store import CertRecord, Document, Store, parse_document
from lecp.tap import Settings

DAY = 86400.0
START = 1_800_000_000.0
_KEY = generate_private_key("ecdsa:p-256")
_CERT = certificate_to_pem(make_self_signed_certificate(_KEY, ["a.test"]))


@attrs.define(eq=False, slots=False)
class Counting(TimedService):
    """A timed service whose pass counts, and can be made to fail or to hang."""

    passes: int = 0
    fail: bool = False
    hang: object = None

    def first_delay(self):
        return 5.0

    def interval(self):
        return 100.0

    async def run_once(self):
        self.passes += 1
        if self.fail:
            raise RuntimeError("boom")
        if self.hang is not None:
            await self.hang


class TimedServiceTests(SynchronousTestCase):
    """The timer every service runs on."""

    def setUp(self):
        self.clock = Clock()
        self.service = Counting(self.clock, Settings(Config()))
        self.service.setName("counting")

    def test_first_pass_then_interval(self):
        """A pass after the first delay, the next one an interval later."""
        self.service.startService()
        self.clock.advance(4.9)
        self.assertEqual(self.service.passes, 0)
        self.clock.advance(0.1)
        self.assertEqual(self.service.passes, 1)
        self.assertEqual(self.service.status.next_run, 105.0)
        self.clock.advance(100)
        self.assertEqual(self.service.passes, 2)

    def test_timer_survives_a_failure(self):
        """A failing pass is logged and reported; the next pass still comes."""
        self.service.fail = True
        self.service.startService()
        self.clock.advance(5)
        self.assertEqual((self.service.status.state, self.service.status.last_error), ("failing", "RuntimeError: boom"))
        self.flushLoggedErrors(RuntimeError)
        self.service.fail = False
        self.clock.advance(100)
        self.assertEqual((self.service.passes, self.service.status.state), (2, "idle"))

    def test_stop_while_a_pass_runs(self):
        """Stopping mid-pass waits for it (at most stop_timeout) and schedules nothing more."""
        self.service.hang = Deferred()
        self.service.startService()
        self.clock.advance(5)
        stopped = self.service.stopService()
        self.assertNoResult(stopped)
        self.clock.advance(4)
        self.successResultOf(stopped)
        self.assertEqual(self.service.status.state, "stopped")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_run_now(self):
        """run_now starts a pass at once and keeps the schedule going."""
        self.service.startService()
        self.successResultOf(self.service.run_now())
        self.assertEqual(self.service.passes, 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)


class FakeWHM:
    def __init__(self, accounts):
        self._accounts = accounts

    async def accounts(self):
        return self._accounts


class FakeRunner:
    """Answers jobs with scripted outcomes, recording them."""

    def __init__(self):
        self.jobs, self.outcomes, self.batches = [], [], []

    async def run(self, user, job):
        self.jobs.append((user, job))
        return self.outcomes.pop(0) if self.outcomes else Outcome(ISSUED, job["vhost"], "renewed", expiry=int(START + 90 * DAY))

    async def run_batch(self, user, jobs):
        self.batches.append((user, [job["vhost"] for job in jobs]))
        return [await self.run(user, job) for job in jobs]

    def stop(self):
        pass


class FakeMailer:
    def __init__(self):
        self.messages, self.sent, self.failed = [], 0, 0

    async def send(self, message):
        self.messages.append(message)
        self.sent += 1
        return True


class RenewalFixture(SynchronousTestCase):
    """A renewal service over one account whose home is a temporary folder; passes run one at a time."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(START)
        base = os.path.abspath(self.mktemp())
        self.home = os.path.join(base, "alice")
        os.makedirs(self.home)
        # The scan refuses accounts with uid 0; as root, the test's account gets a uid of its own.
        self.uid = os.geteuid() or 54321
        self.passwd = {"alice": SimpleNamespace(pw_name="alice", pw_uid=self.uid, pw_dir=self.home, pw_gid=self.uid)}
        os.chown(self.home, self.uid, self.uid)
        self.config = Config(state_dir=base, apache_tls=os.path.join(base, "apache_tls"),
                             userdatadomains=os.path.join(base, "userdatadomains.json"), first_pass_delay=0)
        self.settings = Settings(self.config)
        self.state = State(os.path.join(base, "lecp.sqlite3"))
        self.addCleanup(self.state.close)
        self.runner, self.mailer = FakeRunner(), FakeMailer()
        self.recorder = Recorder(self.clock, self.settings, self.state, self.mailer)
        accounts = [Account("alice", "a.test", ("alice@mail.test",), "root", False, self.uid)]
        self.service = RenewalService(self.clock, self.settings, state=self.state, whm=FakeWHM(accounts),
                                      runner=self.runner, recorder=self.recorder, passwd=lambda: self.passwd)
        self.service.setName("renewal")

    def update_store(self):
        """Change the account's document: written as a file and given to the account's uid."""
        test = self

        class Update:
            def __enter__(self):
                path = Store(test.home).path
                try:
                    with open(path, "rb") as f:
                        self.document = parse_document(f.read())
                except FileNotFoundError:
                    self.document = Document()
                return self.document

            def __exit__(self, kind, *rest):
                if kind is None:
                    os.makedirs(Store(test.home).folder, exist_ok=True)
                    with open(Store(test.home).path, "wb") as f:
                        f.write(self.document.serialise())
                    for folder, _, files in os.walk(test.home):
                        for path in [folder] + [os.path.join(folder, f) for f in files]:
                            os.chown(path, test.uid, test.uid)

        return Update()

    def store_certificate(self, days_left: float, cert_id="", vhost_domains=()):
        record = CertRecord("a.test", private_key_to_pem(_KEY).decode(), _CERT, expiry=int(START + days_left * DAY),
                            not_before=int(START + days_left * DAY - 90 * DAY), cert_id=cert_id, vhost_domains=vhost_domains)
        with self.update_store() as document:
            document.put_certificate(record)

    def run_pass(self):
        self.successResultOf(Deferred.fromCoroutine(self.service.run_once()))



class RenewalServiceTests(RenewalFixture):
    """Decisions, backoff, mails and alerts over successive passes."""

    def test_not_due(self):
        """A certificate with 60 days left is left alone."""
        self.store_certificate(60)
        self.run_pass()
        self.assertEqual(self.runner.jobs, [])
        self.assertEqual(self.service.status.counts["certificates"], 1)

    def test_due_is_renewed_and_the_user_told(self):
        """With 20 days left it is renewed in a worker as the user, and the user gets a mail."""
        self.store_certificate(20)
        self.run_pass()
        self.assertEqual(self.runner.jobs, [("alice", {"job": "renew", "vhost": "a.test"})])
        self.assertEqual([m.subject for m in self.mailer.messages], ["The certificate for a.test was renewed"])
        self.assertEqual(self.mailer.messages[0].to, ("alice@mail.test",))

    def test_one_worker_for_all_of_an_accounts_work(self):
        """Two certificates of one account due: one worker runs both (a batch), each outcome recorded."""
        self.store_certificate(20)
        with self.update_store() as document:
            document.put_certificate(attrs.evolve(document.certificate("a.test"), vhost="b.test"))
        self.run_pass()
        self.assertEqual(self.runner.batches, [("alice", ["a.test", "b.test"])])
        self.assertEqual({v: self.state.cert("alice", v).last_success for v in ("a.test", "b.test")},
                         {"a.test": START, "b.test": START})

    def test_backoff_after_failures(self):
        """Failures wait 1 min, then 10 min, before the next try; one failure mail per 48 h."""
        self.store_certificate(20)
        self.runner.outcomes = [Outcome(FAILED, "a.test", "boom", "fix it")] * 3
        self.run_pass()
        self.assertEqual(self.state.cert("alice", "a.test").next_attempt, START + 60)
        self.clock.advance(30)
        self.run_pass()
        self.assertEqual(len(self.runner.jobs), 1)
        self.clock.advance(31)
        self.run_pass()
        self.assertEqual(len(self.runner.jobs), 2)
        self.assertEqual(self.state.cert("alice", "a.test").next_attempt, self.clock.seconds() + 600)
        failure_mails = [m for m in self.mailer.messages if m.subject.startswith("Action needed")]
        self.assertEqual(len(failure_mails), 1)

    def test_rate_limit_not_retried_early(self):
        """A rate-limited renewal is not retried before the CA's Retry-After."""
        self.store_certificate(20)
        self.runner.outcomes = [Outcome(FAILED, "a.test", "rate limited", error_type="rate_limit",
                                        retry_after=int(START + 5 * 3600))]
        self.run_pass()
        self.clock.advance(3600)
        self.run_pass()
        self.assertEqual(len(self.runner.jobs), 1)
        self.clock.advance(4 * 3600)
        self.run_pass()
        self.assertEqual(len(self.runner.jobs), 2)

    def test_opt_out_honoured(self):
        """A user who turned mails off gets none."""
        self.store_certificate(20)
        with self.update_store() as document:
            document.disable_mail = True
        self.runner.outcomes = [Outcome(FAILED, "a.test", "boom")]
        self.run_pass()
        self.assertEqual(self.mailer.messages, [])

    def test_reinstall_when_cpanel_lost_it(self):
        """A certificate installed once but no longer in cPanel is reinstalled, with no new order."""
        self.store_certificate(60, cert_id="c1")
        self.run_pass()
        self.assertEqual(self.runner.jobs, [("alice", {"job": "reinstall", "vhost": "a.test"})])
        folder = os.path.join(self.config.apache_tls, "a.test")
        os.makedirs(folder)
        with open(os.path.join(folder, "certificates"), "w") as f:
            f.write(_CERT)
        self.run_pass()
        self.assertEqual(len(self.runner.jobs), 1)

    def test_issued_but_never_installed_is_installed(self):
        """A certificate lecp issued and stored, whose job died before installing it, is installed by the next pass."""
        self.store_certificate(60)
        with self.update_store() as document:
            document.put_certificate(attrs.evolve(document.certificate("a.test"), directory="https://ca/dir"))
        self.run_pass()
        self.assertEqual(self.runner.jobs, [("alice", {"job": "reinstall", "vhost": "a.test"})])

    def test_new_names_on_the_website(self):
        """A domain newly parked on the website triggers a renewal that may add it."""
        self.store_certificate(60, vhost_domains=("a.test",))
        with open(self.config.userdatadomains, "w") as f:
            json.dump({"a.test": ["alice", "root", "main", "a.test", "/x"], "new.test": ["alice", "root", "parked", "a.test", "/x"]}, f)
        self.run_pass()
        self.assertEqual(self.runner.jobs, [("alice", {"job": "renew", "vhost": "a.test",
                                                       "optional_names": ["new.test", "www.new.test"]})])

    def test_removed_website_left_alone(self):
        """A certificate whose website is no longer in the account is neither renewed nor mailed about."""
        self.store_certificate(20)
        with open(self.config.userdatadomains, "w") as f:
            json.dump({"other.test": ["alice", "root", "main", "other.test", "/x"]}, f)
        self.run_pass()
        self.assertEqual((self.runner.jobs, self.mailer.messages), ([], []))
        self.assertEqual(self.service.status.counts["by_state"], {"removed": 1})

    def test_admin_alerted_before_expiry(self):
        """A certificate still failing with under 7 days left alerts the admin, once a day."""
        self.store_certificate(5)
        self.runner.outcomes = [Outcome(FAILED, "a.test", "boom")] * 3
        self.run_pass()
        self.clock.advance(DAY)
        self.run_pass()
        alerts = [m for m in self.mailer.messages if m.to == ("root@localhost",)]
        self.assertEqual(len(alerts), 1)
        self.assertIn("expires on", alerts[0].subject)

    def test_broken_store_does_not_stop_the_pass(self):
        """An account whose store does not parse is reported; the others go on."""
        with self.update_store() as document:
            document.disable_mail = True
        with open(Store(self.home).path, "w") as f:
            f.write("{")
        self.run_pass()
        self.assertEqual(self.service.status.counts["errors"], 1)


class HealthTests(SynchronousTestCase):
    """/alive, /health and /metrics."""

    def setUp(self):
        self.clock = Clock()
        self.service = Counting(self.clock, Settings(Config()))
        self.http = StubTreq(HealthResource({"renewal": self.service}, self.clock, 0.0))

    def get(self, path):
        response = self.successResultOf(self.http.get(f"http://127.0.0.1{path}"))
        return response.code, self.successResultOf(response.content())

    def test_alive(self):
        """/alive answers 200 OK."""
        self.assertEqual(self.get("/alive"), (200, b"OK\n"))

    def test_health_reports_failing_with_503(self):
        """/health is 200 with each service's state, and 503 when one is failing."""
        code, body = self.get("/health")
        self.assertEqual((code, json.loads(body)["services"]["renewal"]["state"]), (200, "starting"))
        self.service.status.state, self.service.status.last_error = "failing", "boom"
        code, body = self.get("/health")
        self.assertEqual((code, json.loads(body)["failing"]), (503, ["renewal"]))

    def test_metrics(self):
        """/metrics is Prometheus text with the certificates by state."""
        self.service.status.counts = {"by_state": {"valid": 3, "expired": 1}, "accounts": 2}
        code, body = self.get("/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b'lecp_certificates{state="valid"} 3', body)
        self.assertIn(b"# TYPE lecp_certificates gauge", body)
        self.assertIn(b'lecp_service_up{service="renewal"} 1', body)


class ARITests(RenewalFixture):
    """The renewal service asks the CA for ARI windows."""

    def setUp(self):
        super().setUp()
        from lecp.testing.fakeacme import FakeACME

        self.ca = FakeACME(self.clock, ari=True)
        self.settings.config = attrs.evolve(self.config, directory=self.ca.directory_url)
        self.service.http = StubTreq(self.ca)

    def store_with_ari(self, days_left):
        self.store_certificate(days_left)
        with self.update_store() as document:
            record = document.certificate("a.test")
            document.put_certificate(attrs.evolve(record, directory=self.ca.directory_url, ari_id="AAA.BBB"))
        folder = os.path.join(self.config.apache_tls, "a.test")  # installed, as lecp leaves what it issues
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "certificates"), "w") as f:
            f.write(_CERT)

    def window(self, start_days, end_days):
        import datetime

        def iso(days):
            return datetime.datetime.fromtimestamp(START + days * DAY, tz=datetime.timezone.utc).isoformat()

        self.ca.ari_window = (iso(start_days), iso(end_days))

    def test_open_window_renews_early(self):
        """A window that is already open makes a 60-day-left certificate due now, and the pick is kept."""
        self.store_with_ari(60)
        self.window(-2, -1)
        self.run_pass()
        self.assertEqual(self.runner.jobs, [("alice", {"job": "renew", "vhost": "a.test"})])
        self.assertIn("/ari/AAA.BBB", self.ca.paths("GET"))

    def test_future_window_waits_and_honours_retry_after(self):
        """A window in the future stores a pick inside it and asks again after the CA's Retry-After."""
        self.store_with_ari(60)
        self.window(10, 12)
        self.run_pass()
        self.assertEqual(self.runner.jobs, [])
        state = self.state.cert("alice", "a.test")
        self.assertTrue(START + 10 * DAY <= state.ari_pick <= START + 12 * DAY)
        self.assertEqual(state.ari_next_check, START + 21600)
        self.run_pass()
        self.assertEqual(self.ca.paths("GET").count("/ari/AAA.BBB"), 1)
        self.clock.advance(21600)
        self.run_pass()
        self.assertEqual(self.ca.paths("GET").count("/ari/AAA.BBB"), 2)
        self.assertEqual(self.state.cert("alice", "a.test").ari_pick, state.ari_pick)

    def test_no_ari_at_the_ca(self):
        """A CA without renewalInfo is asked for nothing more than its directory."""
        self.ca.ari = False
        self.store_with_ari(60)
        self.run_pass()
        self.assertEqual([p for p in self.ca.paths() if p.startswith("/ari")], [])


class OrdersSignalTests(RenewalFixture):
    """Who the orders socket works for: the account of the connecting uid, from the configured passwd file."""

    def make_service(self):
        from lecp.daemon.orders import OrdersService

        return OrdersService(self.clock, self.settings, state=self.state, runner=self.runner, recorder=self.recorder,
                             reactor=self.clock, passwd=lambda: self.passwd)

    def test_known_uid_resumes_its_own_orders(self):
        """A signal from alice's uid resumes alice's deferred order, as alice."""
        from lecp.store import PendingOrder

        with self.update_store() as document:
            document.put_pending(PendingOrder("a.test", "https://ca/order/1", "KEY", ("a.test",), "ecdsa:p-256",
                                              "https://ca/dir", int(START)))
        service = self.make_service()
        service.signalled(self.uid)
        self.assertEqual(service.signals, 1)
        self.assertEqual(self.runner.jobs, [("alice", {"job": "resume", "vhost": "a.test"})])

    def test_timer_resumes_due_orders_and_honours_the_mail_opt_out(self):
        """The timer finishes a due deferred order as its user; the user is mailed unless they opted out."""
        from lecp.store import PendingOrder

        for opted_out, mails in ((False, 1), (True, 0)):
            self.mailer.messages.clear()
            with self.update_store() as document:
                document.put_pending(PendingOrder("a.test", "https://ca/order/1", "KEY", ("a.test",), "ecdsa:p-256",
                                                  "https://ca/dir", int(START)))
                document.disable_mail = opted_out
            self.state.set_pending("alice", "a.test", "https://ca/order/1", self.clock.seconds() - 1)
            self.state.set_pending("alice", "later.test", "https://ca/order/2", self.clock.seconds() + 3600)
            self.runner.jobs.clear()
            self.successResultOf(Deferred.fromCoroutine(self.make_service().run_once()))
            self.assertEqual(self.runner.jobs, [("alice", {"job": "resume", "vhost": "a.test"})])
            self.assertEqual(len(self.mailer.messages), mails, f"opted out: {opted_out}")
            self.assertEqual([p[1] for p in self.state.pending()], ["later.test"])

    def test_unknown_uid_and_root_do_nothing(self):
        """A uid the passwd file does not know, or root's, starts no job."""
        service = self.make_service()
        service.signalled(self.uid + 1)
        service.signalled(0)
        self.assertEqual((service.signals, self.runner.jobs), (2, []))
