# -*- test-case-name: tests.integration.test_daemon -*-
"""
Running a job as a cPanel user: the root daemon starts C{python -m lecp.worker} with the user's
uid, gid and supplementary groups and a clean environment (the user's HOME), hands it the job on
standard input and reads the outcome, a line of JSON, from its output. At most C{concurrency}
workers run at once; a worker that outlives C{worker_timeout} is killed. All of an account's due
work can go to one worker as a batch (L{WorkerRunner.run_batch}).
"""

from __future__ import annotations

import json
import os
import pwd
import sys

import attrs
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from lecp.outcome import FAILED, Outcome

log = Logger()
MAX_OUTPUT = 1024 * 1024


class _WorkerProcess(ProcessProtocol):
    def __init__(self, job: bytes, done: Deferred):
        self.job, self.done = job, done
        self.out, self.err, self.size = [], [], 0

    def connectionMade(self):
        self.transport.write(self.job)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.size += len(data)
        if self.size <= MAX_OUTPUT:
            self.out.append(data)

    def errReceived(self, data):
        if sum(len(e) for e in self.err) < 64 * 1024:
            self.err.append(data)

    def processEnded(self, reason):
        self.done.callback((b"".join(self.out), b"".join(self.err), getattr(reason.value, "exitCode", None),
                            getattr(reason.value, "signal", None)))


@attrs.define
class WorkerRunner:
    """Starts workers as users, a bounded number at a time, and kills them on shutdown."""

    reactor: object
    config_path: str
    concurrency: int = 4
    timeout: float = 600.0
    python: str = ""
    running: dict = attrs.field(factory=dict)
    started: int = 0
    passwd: dict | None = None
    _semaphore: DeferredSemaphore = None

    def __attrs_post_init__(self):
        self._semaphore = DeferredSemaphore(self.concurrency)

    def environment(self, account) -> dict:
        env = {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name,
               "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LECP_CONFIG": self.config_path}
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env

    async def run(self, user: str, job: dict) -> Outcome:
        """The outcome of C{job} run as C{user}; a failed outcome (never an exception) if the worker broke."""
        vhost = job.get("vhost") or job.get("target") or ""
        await self._semaphore.acquire()
        try:
            result, detail, refused = await self._run(user, job, vhost, self.timeout)
        finally:
            self._semaphore.release()
        if result is not None and result.get("outcome") not in (None, "error", "refused", "batch"):
            return Outcome.from_json(result)
        return Outcome(FAILED, vhost, detail, error_type="refused" if refused else "worker")

    async def run_batch(self, user: str, jobs: list[dict]) -> list[Outcome]:
        """
        The outcomes of C{jobs}, run by a single worker as C{user} (one process start and one set
        of imports for all of an account's work; see L{lecp.worker.run_batch}); failed outcomes if
        it broke.
        """
        await self._semaphore.acquire()
        try:
            result, detail, _ = await self._run(user, {"job": "batch", "jobs": jobs}, "",
                                                self.timeout + 120.0 * (len(jobs) - 1))
        finally:
            self._semaphore.release()
        answers = (result or {}).get("outcomes") if (result or {}).get("outcome") == "batch" else None
        if not isinstance(answers, list) or len(answers) != len(jobs):
            return [Outcome(FAILED, job.get("vhost", ""), detail, error_type="worker") for job in jobs]
        outcomes = []
        for job, answer in zip(jobs, answers):
            if isinstance(answer, dict) and answer.get("outcome") not in (None, "error", "refused"):
                outcomes.append(Outcome.from_json(answer))
            else:
                answer = answer if isinstance(answer, dict) else {}
                outcomes.append(Outcome(FAILED, job.get("vhost", ""), str(answer.get("message") or "the worker gave no outcome"),
                                        error_type="refused" if answer.get("outcome") == "refused" else "worker"))
        return outcomes

    async def _run(self, user: str, job: dict, vhost: str, timeout: float) -> tuple[dict | None, str, bool]:
        """Run one worker: its JSON answer (or None), the reason when it broke, and whether it refused the job."""
        account = (self.passwd or {}).get(user)
        if account is None:
            try:
                account = pwd.getpwnam(user)
            except KeyError:
                return None, f"the Unix user {user} does not exist", False
        if account.pw_uid == 0:
            return None, "refusing to run a job as root", False
        python = self.python or sys.executable
        done = Deferred()
        self.started += 1
        process = self.reactor.spawnProcess(
            _WorkerProcess(json.dumps(job).encode(), done), python, [python, "-m", "lecp.worker"],
            env=self.environment(account), path=account.pw_dir if os.path.isdir(account.pw_dir) else "/",
            uid=account.pw_uid, gid=account.pw_gid,
        )
        key = (user, vhost, process.pid)
        self.running[key] = process
        timer = self.reactor.callLater(timeout, self._kill, process)
        try:
            out, err, code, signal = await done
        finally:
            self.running.pop(key, None)
            if timer.active():
                timer.cancel()
        lines = out.decode("utf-8", "replace").strip().splitlines()
        try:
            result = json.loads(lines[-1]) if lines else None
        except ValueError:
            result = None
        if not isinstance(result, dict):
            result = None
        if result is not None and result.get("outcome") not in (None, "error", "refused"):
            return result, "", False
        detail = (result or {}).get("message") or (err.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        if signal is not None:
            detail = f"the worker was stopped by signal {signal}"
        log.warn("Worker for {user} {vhost} ended badly ({code}): {detail}", user=user, vhost=vhost or job.get("job"),
                 code=code, detail=detail)
        return None, detail, (result or {}).get("outcome") == "refused"

    def _kill(self, process) -> None:
        try:
            process.signalProcess("KILL")
        except Exception:
            pass

    def stop(self) -> None:
        """Ask every running worker to stop (SIGTERM); their jobs are resumable from the store."""
        for process in list(self.running.values()):
            try:
                process.signalProcess("TERM")
            except Exception:
                pass
