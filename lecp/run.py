"""Running one coroutine to completion on the reactor, from synchronous code (the CGI, the worker, the CLI)."""

from __future__ import annotations


def run_to_completion(make):
    """
    Run C{make(reactor)} (a coroutine) under C{task.react} and return its result, or raise its
    exception here, as a plain function call would.
    """
    from twisted.internet import defer, task

    box = []

    def main(reactor):
        d = defer.Deferred.fromCoroutine(make(reactor))
        return d.addBoth(box.append)  # the outcome, kept; react itself always ends cleanly

    try:
        task.react(main)
    except SystemExit:
        pass
    if not box:
        raise RuntimeError("the reactor stopped before the job finished")
    result = box[0]
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result
