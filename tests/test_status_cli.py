"""`bgai status --watch` and `BGAI_REDIS_URL`, against a real redis-server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result
from redis_server import free_port, redis_server

from bgai.cli.main import cli
from bgai.config import config_to_dict, load_config
from bgai.errors import ConfigError
from bgai.store import runstate
from bgai.store.keys import Keys


def status(*args: str, env: dict[str, str] | None = None) -> Result:
    out = CliRunner().invoke(cli, ["status", *args], env=env)
    assert "Traceback" not in out.output, out.output
    return out


def elsewhere(tmp_path: Path) -> Path:
    """A config whose redis section names a port nobody listens on."""
    path = tmp_path / "elsewhere.yaml"
    path.write_text(f"redis:\n  host: 127.0.0.1\n  port: {free_port()}\n")
    return path


def test_watch_redraws_the_status_block_count_times(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port:
        out = status("--set", f"redis.port={port}", "--watch", "0.1", "--count", "2")
        as_json = status("--set", f"redis.port={port}", "--watch", "--json", "--count", "2")
    assert out.exit_code == 0, out.output
    headers = [ln for ln in out.output.splitlines() if ln.startswith("bgai status every 0.1 s, ")]
    assert len(headers) == 2 and out.output.count("\nbuffer 0 positions in 0 games") == 2, out.output
    assert as_json.exit_code == 0, as_json.output  # `--watch` alone: every 2 s; JSON lines, no headers
    assert [json.loads(ln)["status"] for ln in as_json.output.splitlines()] == [None, None]


def test_ctrl_c_ends_the_watch_quietly_with_exit_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    with redis_server(tmp_path / "redis") as port, monkeypatch.context() as m:
        m.setattr("bgai.cli.fleet.time.sleep", interrupted)  # Ctrl-C while it waits to redraw
        out = status("--set", f"redis.port={port}", "--watch", "5")
    assert out.exit_code == 0 and "Aborted" not in out.output, out.output
    assert out.output.count("\nbuffer ") == 1


def test_the_watch_shows_a_lost_redis_in_one_line_and_goes_on(tmp_path: Path) -> None:
    out = status("--config", str(elsewhere(tmp_path)), "--watch", "0.1", "--count", "2")
    errors = [ln for ln in out.output.splitlines() if ln.startswith("Error: Redis at 127.0.0.1:")]
    assert out.exit_code == 0 and len(errors) == 2 and "is unreachable" in errors[0], out.output


def test_bgai_redis_url_wins_over_the_configs_redis_section(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port:
        admin = redis.Redis(port=port, db=3)
        runstate.start_run(admin, Keys(), "run-in-db-3")
        admin.close()
        cfg = str(elsewhere(tmp_path))
        away = status("--config", cfg)
        out = status("--config", cfg, env={"BGAI_REDIS_URL": f"redis://127.0.0.1:{port}/3"})
    assert away.exit_code == 2 and "is unreachable" in away.output
    assert out.exit_code == 0, out.output
    assert out.output.startswith("run run-in-db-3  status running"), out.output


def test_a_malformed_bgai_redis_url_is_one_error_line_naming_it_exit_2(tmp_path: Path) -> None:
    for url in ("127.0.0.1:6379", "redis://admin:s3cretpw@head:port", "http://head:6379"):
        out = status("--config", str(elsewhere(tmp_path)), env={"BGAI_REDIS_URL": url})
        errors = [ln for ln in out.output.splitlines() if ln.startswith("Error:")]
        assert out.exit_code == 2 and len(errors) == 1, out.output
        assert "redis.url: not a Redis URL" in errors[0] and "(env BGAI_REDIS_URL)" in errors[0], errors
        assert "s3cretpw" not in out.output


def test_a_redis_url_sets_the_address_and_leaves_one_address_in_the_config(tmp_path: Path) -> None:
    yaml = tmp_path / "c.yaml"
    yaml.write_text("redis:\n  host: 10.0.0.9\n  port: 7000\n  username: game@w1\n  password: from-file\n")
    cfg = load_config(yaml, env={"BGAI_REDIS_URL": "rediss://10.0.0.5:6390/2"})
    r = cfg.redis
    assert (r.url, r.host, r.port, r.db, r.tls) == ("", "10.0.0.5", 6390, 2, True)
    assert (r.username, r.password) == ("game@w1", "from-file")  # a URL without them keeps the keys'
    named = load_config(None, env={"BGAI_REDIS_URL": "redis://admin:p%40ss@[::1]"}).redis
    assert (named.host, named.port, named.db, named.tls, named.username, named.password) == (
        "::1",
        6379,
        0,
        False,
        "admin",
        "p@ss",
    )
    assert (
        config_to_dict(load_config(None, overrides={"redis.url": "redis://u:pw@h"}), masked=True)["redis"][
            "password"
        ]
        == "***"
    )
    assert dataclasses.replace(r, port=7001).port == 7001  # read once: replace() sets the port again


URL = "BGAI_REDIS_URL"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({URL: "redis://h", "BGAI_REDIS__URL": "redis://g"}, "BGAI_REDIS_URL: give it or BGAI_REDIS__URL"),
        (
            {URL: "redis://localhost", "BGAI_REDIS__TLS": "true", "BGAI_REDIS__CA_FILE": "/ca"},
            "use rediss://",
        ),
        ({URL: "redis://10.1.2.3:6379"}, "redis.password: is required for a Redis off this host"),
        ({URL: "redis://h/4096"}, "redis.db: must be <= 1023"),
        ({URL: "redis://h:6379?ssl=1"}, "query parameters are not read"),
    ],
)
def test_what_a_redis_url_cannot_say_is_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        load_config(None, env=env)


def test_status_flags_a_fleet_on_mixed_bgai_versions_and_shows_the_champion(tmp_path: Path) -> None:
    from bgai.roles.identity import Identity
    from bgai.store import evals, registry

    with redis_server(tmp_path / "redis") as port:
        r = redis.Redis(port=port)
        keys = Keys()
        runstate.start_run(r, keys, "run-a")
        for host, code in (
            ("h1", "0.1.1.dev5+gaaaaaaa"),
            ("h2", "0.1.1.dev5+gaaaaaaa"),
            ("h3", "0.1.1.dev9+gbbbbbbb"),
        ):
            ident = Identity(f"{host}:game:0", "game", host, "cpu", "", bgai_version=code)
            registry.heartbeat(r, keys, ident.info(0.0, "running"), 60.0)
        same = status("--set", f"redis.port={port}")
        assert "warning: the fleet runs 2 bgai versions" in same.output, same.output
        assert "0.1.1.dev5+gaaaaaaa on h1, h2; 0.1.1.dev9+gbbbbbbb on h3" in same.output
        assert "champion: none yet" in same.output
        evals.promote(r, keys, "run-a", 7, "er", -12.5)
        out = status("--set", f"redis.port={port}", "--json")
        data = json.loads(out.output)
        assert data["champion"] == {"version": 7, "metric": "er", "value": -12.5}
        assert data["bgai_versions"] == {"0.1.1.dev5+gaaaaaaa": ["h1", "h2"], "0.1.1.dev9+gbbbbbbb": ["h3"]}
        assert "champion: version 7 (ER 12.5)" in status("--set", f"redis.port={port}").output
        registry.deregister(r, keys, "h3:game:0")
        assert "bgai versions" not in status("--set", f"redis.port={port}").output
        r.close()
