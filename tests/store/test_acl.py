"""Per-role Redis ACL users on a real redis-server: every role does its work under its own user,
and no more: a game worker cannot SET the weights key, change the run state or delete keys."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest
import redis
from redis_server import redis_server

from bgai.clock import FakeClock
from bgai.config import load_config
from bgai.roles.coordinator import Coordinator
from bgai.roles.eval_worker import EvalWorker
from bgai.roles.game_worker import GameWorker
from bgai.roles.identity import Identity
from bgai.roles.training_worker import TrainingWorker
from bgai.store import acl, runstate, weights
from bgai.store.client import connect
from bgai.store.keys import Keys

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"


def test_secrets_are_private_hashed_and_kept(tmp_path: Path) -> None:
    keys = Keys("bgai")
    pw = acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys)
    assert set(pw) == set(acl.ROLES) and len(set(pw.values())) == len(acl.ROLES)
    for f in ("secrets.env", "users.acl"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600
    text = (tmp_path / "users.acl").read_text()
    assert not any(p in text for p in pw.values())  # hashes only
    assert "user default on #" in text and "nopass" not in text  # a password for every user
    assert acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys) == pw  # kept
    assert acl.read_secrets(tmp_path / "secrets.env") == pw


def test_each_role_works_under_its_own_user_and_no_more(tmp_path: Path) -> None:
    dirs = {"training.checkpoint_dir": str(tmp_path / "ckpt"), "selfplay.spool_dir": str(tmp_path / "spool")}
    cfg0 = load_config(FLEET_YAML, env={}, overrides=dirs)
    keys = Keys(cfg0.redis.prefix)
    pw = acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys)
    with redis_server(tmp_path / "redis", extra=("--aclfile", str(tmp_path / "users.acl"))) as port:

        def client(role: str, password: str | None = None) -> redis.Redis:
            rc = dataclasses.replace(cfg0.redis, port=port, username=role, password=password or pw[role])
            return connect(rc)

        cfg = dataclasses.replace(cfg0, redis=dataclasses.replace(cfg0.redis, port=port))
        clock = FakeClock()

        def ident(kind: str) -> Identity:
            return Identity(f"acl:{kind}", kind, "127.0.0.1", "cpu", "test")

        coord = Coordinator(cfg, client("coordinator"), keys, ident("coordinator"), clock)
        trainer = TrainingWorker(cfg, client("training"), keys, ident("training"))
        game = GameWorker(cfg, client("game"), keys, ident("game"))
        ev = EvalWorker(cfg, client("eval"), keys, ident("eval"))
        for role in (coord, trainer, game, ev):
            role.setup()
        coord.run_once()
        admin = client("admin")
        assert runstate.get_run(admin, keys)[1] == "running"
        for _ in range(200):  # bounded: a whole cycle under the four users
            game.run_once()
            trainer.run_once()
            if (weights.current_version(admin, keys) or 0) >= 1:
                break
        assert weights.current_version(admin, keys) >= 1
        assert "slice" in ev.run_once().summary
        # the game worker's user: no weights, no run state, no deleting, nothing dangerous
        g = client("game")
        for attempt in (
            lambda: g.set(keys.model_weights, b"evil"),
            lambda: g.set(keys.model_version, 99),
            lambda: g.set(keys.run_status, "stopped"),
            lambda: g.delete(keys.model_weights),
            lambda: g.delete(keys.run_id),
            lambda: g.flushall(),
            lambda: g.keys("*"),
            lambda: g.config_get("*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
        e = client("eval")
        with pytest.raises(redis.exceptions.NoPermissionError):
            e.set(keys.model_weights, b"evil")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client("coordinator").set(keys.model_weights, b"evil")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client("training").set(keys.run_status, "stopped")
        # no password, a wrong one: refused
        anon = redis.Redis(port=port)
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
            anon.get(keys.model_version)
        with pytest.raises(redis.exceptions.AuthenticationError):
            client("game", "wrong-password").ping()
        for c in (coord.r, trainer.r, game.r, ev.r, g, e, admin, anon):
            c.close()
