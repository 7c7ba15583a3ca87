"""The pod annotation that opts a pod into fencing, and how its value reads.

``flotilla.io/stop-after-disconnect: "90s"`` asks the node's agent to stop the pod's
containers once the agent has not reached the API server for that long (a Go duration;
"0" opts the pod out of a node-wide default). The apiserver validates the value, the agent
acts on it (agent/kubelet/fencing.py).

Pure functions; no state.
"""

from __future__ import annotations

from control.api.timeutil import parse_duration

STOP_AFTER_DISCONNECT = "flotilla.io/stop-after-disconnect"


def parse_stop_after(value: str) -> float:
    """Seconds from the annotation's value; ValueError (saying why) if it is not a
    duration of zero or more."""
    seconds = parse_duration(value.strip())
    if seconds < 0:
        raise ValueError(f'must not be negative, got "{value}"')
    return seconds
