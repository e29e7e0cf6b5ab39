"""
A test helper, run as a separate process: one lecp job for one emulated account, as root through
`uapi --user` (the worker itself refuses root), printing the outcome as JSON.

    python run_job.py CONFIG HOME USER JOB VHOST
    python run_job.py --count HOME N     (N locked increments of a counter in the store)
"""

import json
import sys


def main(argv):
    if argv[0] == "--count":
        from lecp.store import Store

        store = Store(argv[1])
        for _ in range(int(argv[2])):
            with store.update() as document:
                document.raw["test_counter"] = document.raw.get("test_counter", 0) + 1
        return 0
    config_path, home, user, job, vhost = argv
    from twisted.internet import defer, task

    from lecp.config import load
    from lecp.cpanel import CPanel, UAPICommand
    from lecp.issuance import Jobs
    from lecp.outcome import Refused
    from lecp.store import Store

    async def run(reactor):
        config = load(config_path)
        jobs = Jobs.create(reactor, config, Store(home), CPanel(UAPICommand(reactor, user=user, executable=config.uapi)))
        try:
            outcome = (await getattr(jobs, job)(vhost)).to_json()
        except Refused as refused:
            outcome = refused.to_json()
        print(json.dumps(outcome))

    task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
