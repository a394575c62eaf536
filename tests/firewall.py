"""The firewall of a worker host joined by token in the tests: inside its network namespace,
nftables drops every connection opened towards it (replies to its own connections, and its
loopback, get through), so it can reach the head and the head cannot reach it."""

from __future__ import annotations

import subprocess

DROP_INBOUND = """
table inet bgai_joined {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iif lo accept
  }
}
"""


def wall_off(netns: str) -> None:
    """Apply DROP_INBOUND inside the network namespace `netns` (needs root and nft)."""
    subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-f", "-"], input=DROP_INBOUND, check=True, text=True
    )
