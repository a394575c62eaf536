"""Alertmanager's configuration for a bgai fleet: one route, to a webhook the user names.

Prometheus evaluates the fleet's rules (configs/rules/) and sends what fires to Alertmanager;
this route groups alerts by name and posts them, and their resolution, to the webhook (any
receiver of Alertmanager's webhook JSON: a chat bridge, a pager, a script). Without a webhook the
alerts are still shown by Alertmanager's UI and `amtool alert`, and sent nowhere.

    python -m bgai.obs.alerting --webhook URL --out alertmanager.yml

The local fleet writes its file this way at start (supervisor/alertmanager-local.conf, the URL
from $BGAI_ALERT_WEBHOOK); the Ansible role renders the same route from `bgai_alert_webhook`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

GROUP_WAIT = "10s"  # first notification of a new group: soon, with what fired beside it
GROUP_INTERVAL = "1m"  # a change in a group (a new alert, a resolution): within a minute
REPEAT_INTERVAL = "4h"  # an alert still firing is sent again this often


def check_webhook(url: str) -> str:
    """The webhook URL, or ValueError naming what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"alert webhook {url!r}: want an http:// or https:// URL with a host")
    return url


def alertmanager_config(webhook: str = "") -> dict[str, object]:
    """The configuration: every alert to `webhook` (resolutions too), or to no receiver when empty."""
    receiver: dict[str, object] = {"name": "webhook" if webhook else "none"}
    if webhook:
        receiver["webhook_configs"] = [{"url": check_webhook(webhook), "send_resolved": True}]
    return {
        "route": {
            "receiver": receiver["name"],
            "group_by": ["alertname"],
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": REPEAT_INTERVAL,
        },
        "receivers": [receiver],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bgai.obs.alerting", description=__doc__.split("\n")[0])
    parser.add_argument("--webhook", default="", help="where alerts are posted ('' = nowhere)")
    parser.add_argument("--out", type=Path, required=True, help="the file to write")
    args = parser.parse_args(argv)
    try:
        config = alertmanager_config(args.webhook.strip())
    except ValueError as exc:
        print(f"bgai: {exc}", file=sys.stderr)
        return 2
    text = "# written by bgai.obs.alerting: edit BGAI_ALERT_WEBHOOK, not this file\n"
    args.out.write_text(text + yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
