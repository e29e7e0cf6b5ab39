"""Shared helpers for benchmark scripts: machine facts, statistics, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict:
    """What the figures were measured on."""
    versions = {}
    for name in ("lecp", "twisted", "treq", "acme", "josepy", "cryptography"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        pebble = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "pebble"], capture_output=True, text=True).stdout
    except OSError:
        pebble = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pebble": pebble or None,
        "versions": versions,
    }


def summary(values: list[float]) -> dict:
    """Median, p90, p95, min and max of a list of seconds."""
    ordered = sorted(values)

    def rank(q):
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

    return {
        "n": len(values),
        "median": round(statistics.median(ordered), 4),
        "p90": round(rank(0.9), 4),
        "p95": round(rank(0.95), 4),
        "min": round(ordered[0], 4),
        "max": round(ordered[-1], 4),
    }


def write_result(name: str, data: dict) -> str:
    """Write C{bench/results/NAME.json}; returns the path."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), **data}, f, indent=2)
        f.write("\n")
    return path
