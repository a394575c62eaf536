"""Where each bgai program serves /metrics: a fixed base port per role kind plus the process's
number, so that a firewall can be opened for known ports and a Prometheus on a worker host can
scrape its own workers without the coordinator's file_sd file.

    kind         base   programs (supervisor/*.conf)        ports
    coordinator  9310   coordinator                         9310
    training     9311   training-worker                     9311
    game         9320   game-worker-N  (N = process_num)    9320 + N  (9320-9359: up to 40)
    eval         9360   eval-worker-N                       9360 + N

Every starter of the program files (scripts/fleet-local, the Ansible bgai role, the test
harness) gives the bases as BGAI_METRICS_PORT_<KIND> (`port_env`); base 0 is any free port
(what the tests use: several fleets run at once on one machine). Imports nothing heavy: the
CLI and the deployment code read it.
"""

from __future__ import annotations

MAX_PORT = 65535

# Role kind (bgai.roles.identity's worker types) -> its first /metrics port
DEFAULT_METRICS_PORTS: dict[str, int] = {
    "coordinator": 9310,
    "training": 9311,
    "game": 9320,
    "eval": 9360,
}


def metrics_port(base: int, offset: int) -> int:
    """The port of the program numbered `offset` of a kind whose base is `base`: base + offset,
    or 0 (any free port) when the base is 0, whatever the offset. ValueError for a negative
    base or offset, or a port past 65535."""
    if base < 0 or offset < 0:
        raise ValueError(f"metrics port base {base} and offset {offset} must be >= 0")
    if base == 0:
        return 0
    port = base + offset
    if port > MAX_PORT:
        raise ValueError(f"metrics port {base} + {offset} = {port} is past {MAX_PORT}")
    return port


def port_env(kind: str) -> str:
    """The environment variable the supervisor program files read `kind`'s base port from:
    "game" -> BGAI_METRICS_PORT_GAME."""
    if kind not in DEFAULT_METRICS_PORTS:
        raise ValueError(
            f"no metrics port for role kind {kind!r} (one of {', '.join(DEFAULT_METRICS_PORTS)})"
        )
    return f"BGAI_METRICS_PORT_{kind.upper()}"
