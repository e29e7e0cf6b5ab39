# -*- test-case-name: tests.integration.test_admin -*-
"""
Work the admin asks for, done exactly as the daemon does it: each job runs in a worker as the
account's user (root never touches a home), a bounded number at once, and its outcome goes into
root's state so the daemon's backoff and retries agree with what happened. Users get no e-mail
about work the admin ran by hand: the admin sees the outcome.
"""

from __future__ import annotations

import os
import sys

import attrs

from lecp.daemon.scan import Work
from lecp.outcome import DEFERRED, ISSUED, REMOVED, Outcome


@attrs.frozen
class Task:
    """One job for one account's worker; C{work} says how its outcome is recorded."""

    user: str
    job: dict
    work: Work

    @property
    def vhost(self) -> str:
        return self.work.vhost


def renewal_task(user: str, vhost: str, action: str = "renew", reason: str = "asked by the admin",
                 expiry: float = 0.0, added_names=()) -> Task:
    """The task renewing (or reinstalling, or resuming) one certificate."""
    from lecp.daemon.renewal import job_for

    work = Work(user, vhost, action, reason, expiry, tuple(added_names), disable_mail=True)
    return Task(user, job_for(work), work)


def config_path(config) -> str:
    return "" if config.source in ("", "(defaults)") else config.source


async def run_tasks(reactor, config, tasks: list[Task], progress=None) -> list[tuple[Task, Outcome]]:
    """
    Run C{tasks} in workers (one per account, for all of its tasks), C{config.concurrency} at once,
    calling C{progress(done, total, task, outcome)} as each ends; every outcome is recorded in
    root's state.
    """
    from twisted.internet.defer import Deferred, gatherResults

    from lecp.daemon.accounts import read_passwd
    from lecp.daemon.outcomes import Recorder
    from lecp.daemon.state import State
    from lecp.daemon.workers import WorkerRunner
    from lecp.tap import Settings

    runner = WorkerRunner(reactor, config_path(config), config.concurrency, config.worker_timeout,
                          config.worker_python or sys.executable)
    runner.passwd = read_passwd(config.passwd)
    state = State(os.path.join(config.state_dir, "lecp.sqlite3"))
    recorder = Recorder(reactor, Settings(config), state, mailer=None)
    results: list[tuple[Task, Outcome]] = []

    async def account(batch: list[Task]) -> None:
        # All of an account's tasks go to one worker, as the daemon sends them.
        if len(batch) == 1:
            outcomes = [await runner.run(batch[0].user, batch[0].job)]
        else:
            outcomes = await runner.run_batch(batch[0].user, [t.job for t in batch])
        for task, outcome in zip(batch, outcomes):
            await record(recorder, state, task, outcome)
            results.append((task, outcome))
            if progress is not None:
                progress(len(results), len(tasks), task, outcome)

    by_user: dict = {}
    for task in tasks:
        by_user.setdefault(task.user, []).append(task)
    try:
        await gatherResults([Deferred.fromCoroutine(account(batch)) for batch in by_user.values()])
    finally:
        state.close()
    return results


async def record(recorder, state, task: Task, outcome: Outcome) -> None:
    """What root remembers of an outcome: a refusal (busy, bad input) changes nothing."""
    if outcome.error_type == "refused":
        return
    job = task.job["job"]
    if job == "remove" and outcome.kind == REMOVED:
        state.forget_cert(task.user, task.vhost)
        state.clear_pending(task.user, task.vhost)
    elif job in ("renew", "reinstall", "resume") or outcome.kind in (ISSUED, DEFERRED):
        await recorder.record(task.work, outcome)
