"""
One job for one cPanel user, run as that user:

    echo '{"job": "renew", "vhost": "example.com"}' | python -m lecp.worker

The daemon starts it with the user's uid, gid and groups and a clean environment; it reads the
job as JSON on standard input and prints the outcome as one line of JSON. It refuses to run as
root. Jobs: issue (vhost, names, key_type, dry_run, skip_failed_names, deadline), resume, renew
(vhost, names, skip_failed_names, deadline), remove (vhost, revoke), reinstall (vhost,
preferred_issuer), reuse (source, target), remove_reuse (vhost), check (vhost, names: the
pre-flight alone).
Exit status: 0 with an outcome (even a failed one), 2 for a refused job, 1 when the worker failed.
"""

from __future__ import annotations

import json
import os
import pwd
import sys

JOBS = {
    "issue": ("vhost", "names", "key_type", "dry_run", "skip_failed_names", "deadline"),
    "resume": ("vhost", "deadline"),
    "renew": ("vhost", "names", "optional_names", "skip_failed_names", "deadline"),
    "remove": ("vhost", "revoke"),
    "reinstall": ("vhost", "preferred_issuer"),
    "reuse": ("source", "target"),
    "remove_reuse": ("vhost",),
    "check": ("vhost", "names"),
}
MAX_BATCH = 100
BATCH_PARALLEL = 4  # jobs of one batch running at once


def _emit(value: dict) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def parse_job(text: str) -> tuple[str, dict]:
    """
    The job name and its arguments; ValueError with the reason when malformed. A C{batch}
    (C{{"job": "batch", "jobs": [job, ...]}}, at most L{MAX_BATCH}) runs its jobs in this one
    process, L{BATCH_PARALLEL} at a time: the daemon renews all of an account's due certificates
    that way.
    """
    try:
        request = json.loads(text)
    except ValueError as e:
        raise ValueError(f"the job is not JSON ({e})") from None
    if isinstance(request, dict) and request.get("job") == "batch":
        jobs = request.get("jobs")
        if set(request) != {"job", "jobs"} or not isinstance(jobs, list) or not 1 <= len(jobs) <= MAX_BATCH:
            raise ValueError(f"a batch is {{\"job\": \"batch\", \"jobs\": [...]}} with 1 to {MAX_BATCH} jobs")
        return "batch", {"jobs": [_parse_one(job) for job in jobs]}
    return _parse_one(request)


def _parse_one(request) -> tuple[str, dict]:
    if not isinstance(request, dict) or request.get("job") not in JOBS:
        raise ValueError(f"the job must be an object whose 'job' is one of {', '.join(JOBS)}")
    allowed = JOBS[request["job"]]
    unknown = set(request) - set(allowed) - {"job"}
    if unknown:
        raise ValueError(f"unknown argument(s) for {request['job']}: {', '.join(sorted(unknown))}")
    arguments = {k: request[k] for k in allowed if k in request}
    if request["job"] == "remove_reuse":
        arguments = {"target": arguments.get("vhost", "")}
    return request["job"], arguments


async def run_job(reactor, job: str, arguments: dict) -> dict:
    from lecp.config import load
    from lecp.cpanel import CPanel, UAPICommand
    from lecp.issuance import Jobs
    from lecp.store import Store

    config = load()
    home = pwd.getpwuid(os.geteuid()).pw_dir
    jobs = Jobs.create(reactor, config, Store(home), CPanel(UAPICommand(reactor, executable=config.uapi)))
    if job == "batch":
        return {"outcome": "batch", "outcomes": await run_batch(jobs, arguments["jobs"])}
    outcome = await getattr(jobs, job)(**arguments)
    return outcome.to_json()


async def run_batch(jobs, items, parallel: int = BATCH_PARALLEL) -> list[dict]:
    """
    The outcomes of a batch's C{(job, arguments)} items, in their order, up to C{parallel} running
    at once so that their pre-flights and ACME round trips overlap. The jobs keep to themselves
    what must happen one at a time: store updates are locked, cPanel installs take turns.
    """
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults

    semaphore = DeferredSemaphore(parallel)

    def start(name: str, arguments: dict) -> Deferred:
        return semaphore.run(lambda: Deferred.fromCoroutine(_run_one(jobs, name, arguments)))

    return await gatherResults([start(name, arguments) for name, arguments in items])


async def _run_one(jobs, name: str, arguments: dict) -> dict:
    """One job of a batch: its outcome, or the refusal or error that ended it (the batch goes on)."""
    try:
        return (await getattr(jobs, name)(**arguments)).to_json()
    except Exception as error:
        return {**_failure(error)[0], "vhost": arguments.get("vhost", "")}


def _failure(error: Exception) -> tuple[dict, int]:
    """The outcome line and exit status of a job that ended in C{error} (unexpected ones are traced on stderr)."""
    from lecp.config import ConfigError
    from lecp.cpanel.envelope import CPanelError
    from lecp.outcome import Refused
    from lecp.store import StoreError

    if isinstance(error, Refused):
        return error.to_json(), 2
    if isinstance(error, (ConfigError, StoreError, CPanelError)):
        return {"outcome": "error", "message": str(error)}, 1
    import traceback

    traceback.print_exception(error, file=sys.stderr)
    return {"outcome": "error", "message": f"unexpected error: {error}"}, 1


def main(argv=None) -> int:
    if os.geteuid() == 0:
        _emit({"outcome": "error", "message": "lecp.worker refuses to run as root: it runs jobs as the account's user"})
        return 1
    try:
        job, arguments = parse_job(sys.stdin.read(1024 * 1024))
    except ValueError as e:
        _emit({"outcome": "refused", "message": str(e), "status": 400})
        return 2
    from lecp.run import run_to_completion

    try:
        _emit(run_to_completion(lambda reactor: run_job(reactor, job, arguments)))
        return 0
    except Exception as error:
        outcome, code = _failure(error)
        _emit(outcome)
        return code


if __name__ == "__main__":
    sys.exit(main())
