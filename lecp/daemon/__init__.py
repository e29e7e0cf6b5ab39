"""The root daemon's parts: state, renewal policy, scan, workers, services, mail, health."""
