"""Per-role Redis ACL users on a real redis-server: every role does its work under its own user,
and no more: a game worker cannot SET the weights key, change the run state or delete keys; a
game or eval worker host writes only its own registry keys; no role can flush or replace scripts
or load a function; stats a game user forges are skipped by the trainer."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import pytest
import redis
from redis_server import redis_server
from synthetic_episodes import K, make_episode

from bgai.clock import FakeClock
from bgai.config import load_config
from bgai.roles.coordinator import Coordinator
from bgai.roles.eval_worker import EvalWorker
from bgai.roles.game_worker import GameWorker
from bgai.roles.identity import Identity
from bgai.roles.training_worker import TrainingWorker
from bgai.store import acl, evals, registry, runstate, weights
from bgai.store.client import connect
from bgai.store.codec import encode_episode
from bgai.store.keys import Keys
from bgai.store.registry import WorkerInfo
from bgai.store.replay import ReplayStore
from bgai.store.sampler import ReplayMirror

FLEET_YAML = Path(__file__).resolve().parents[1] / "fleet.yaml"


def test_secrets_are_private_hashed_and_kept(tmp_path: Path) -> None:
    keys = Keys("bgai")
    pw = acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys, ["w1", "w2"])
    assert set(pw) == set(acl.ROLES) and len(set(pw.values())) == len(acl.ROLES)
    for f in ("secrets.env", "users.acl"):
        assert stat.S_IMODE((tmp_path / f).stat().st_mode) == 0o600
    text = (tmp_path / "users.acl").read_text()
    lines = {line.split()[1]: line for line in text.splitlines()}
    assert list(lines) == [
        *("default", "coordinator", "training"),
        *("game@w1", "game@w2", "eval@w1", "eval@w2", "admin"),
    ]
    own, every = (f" ~{keys.worker(h)}* " for h in ("w1:", ""))
    assert own in lines["game@w1"] and every not in lines["game@w1"]  # its own records only
    assert f" %R~{keys.worker('')}* " in lines["eval@w2"] and own.replace("w1", "w2") in lines["eval@w2"]
    own = {h: acl.host_passwords(pw, h) for h in ("w1", "w2")}
    assert own["w1"]["game"] != own["w2"]["game"] != pw["game"]  # one per host, not the secret
    assert own["w1"]["training"] == pw["training"]
    every = [*pw.values(), *own["w1"].values(), *own["w2"].values()]
    assert not any(p in text for p in every)  # hashes only
    assert "user default on #" in text and "nopass" not in text  # a password for every user
    again = acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys, ["w1", "w2"])
    assert again == pw  # kept
    with pytest.raises(ValueError, match="host name"):
        acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys, ["w*"])
    assert acl.read_secrets(tmp_path / "secrets.env") == pw


def test_each_role_works_under_its_own_user_and_no_more(tmp_path: Path) -> None:
    dirs = {"training.checkpoint_dir": str(tmp_path / "ckpt"), "selfplay.spool_dir": str(tmp_path / "spool")}
    cfg0 = load_config(FLEET_YAML, env={}, overrides=dirs)
    keys = Keys(cfg0.redis.prefix)
    pw = acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys, ["acl"])
    with redis_server(tmp_path / "redis", extra=("--aclfile", str(tmp_path / "users.acl"))) as port:

        def client(role: str, password: str | None = None) -> redis.Redis:
            user = acl.username(role, "acl")  # the workers' ids are acl:game, acl:eval
            mine = acl.host_passwords(pw, "acl")[role]
            rc = dataclasses.replace(cfg0.redis, port=port, username=user, password=password or mine)
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
        # the eval worker completes a version and crowns it, under its own user (the champion's
        # script may read the run id only as an argument: Redis checks a script's keys for writes)
        for _ in range(4):
            if evals.champion(admin, keys) is not None:
                break
            ev.run_once()
        assert evals.champion(admin, keys) is not None
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


def test_a_host_writes_only_its_own_registry_keys_and_no_role_flushes_scripts(tmp_path: Path) -> None:
    keys = Keys("bgai")
    pw = acl.ensure_secrets(tmp_path / "secrets.env", tmp_path / "users.acl", keys, ["w1", "w2"])
    with redis_server(tmp_path / "redis", extra=("--aclfile", str(tmp_path / "users.acl"))) as port:

        def client(role: str, host: str | None = None, password: str | None = None) -> redis.Redis:
            mine = acl.host_passwords(pw, host)[role] if host else pw[role]
            return redis.Redis(port=port, username=acl.username(role, host), password=password or mine)

        admin, g1, e1 = client("admin"), client("game", "w1"), client("eval", "w1")
        runstate.start_run(admin, keys, "run-1")
        head = WorkerInfo("head:training", "training", "cpu", "", "head", 0, "running", 0, 1, 0.0)
        registry.heartbeat(client("training"), keys, head, 60)
        w2 = WorkerInfo("w2:game:0", "game", "cpu", "", "w2", 9100, "running", 0, 1, 0.0, owner="w2:game:0:n")
        registry.heartbeat(client("game", "w2"), keys, w2, 60)
        # its own record: written, refreshed, removed
        mine = WorkerInfo(
            "w1:game:0", "game", "cpu", "", "w1", 9100, "running", 0, 1, 0.0, owner="w1:game:0:n"
        )
        assert registry.heartbeat(g1, keys, mine, 60) is None
        ev = dataclasses.replace(mine, worker_id="w1:e0", type="eval", owner="w1:e0:n")
        assert registry.heartbeat(e1, keys, ev, 60) is None
        assert e1.get(keys.worker("w2:game:0"))  # the eval user reads every heartbeat (slice owners)
        # another host's, the trainer's, the coordinator's index: not for a worker host's users
        forged = dataclasses.replace(head, metrics_host="evil.example", metrics_port=1)
        for user in (g1, e1):
            for attempt in (
                lambda u=user: registry.heartbeat(u, keys, forged, 60),
                lambda u=user: u.set(keys.worker("w2:game:0"), "{}"),
                lambda u=user: u.delete(keys.worker("w2:game:0")),
                lambda u=user: u.sadd(keys.workers_index, "x"),
                lambda u=user: u.set(keys.workers_index, "x"),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    attempt()
        assert set(registry.list_workers(admin, keys)) == {"head:training", "w2:game:0", "w1:game:0", "w1:e0"}
        assert json.loads(admin.get(keys.worker("head:training")))["metrics_port"] == 0  # untouched
        # one host's password is not another host's
        with pytest.raises(redis.exceptions.AuthenticationError):
            client("game", "w2", password=acl.host_passwords(pw, "w1")["game"]).ping()
        # scripts: each role runs them (EVAL, EVALSHA, SCRIPT LOAD); none can flush them or use
        # functions (they would persist in the append-only file)
        store = ReplayStore(g1, keys, capacity=1000)
        assert store.push(encode_episode(make_episode(30, 0))) == 1
        for role, host in (("game", "w1"), ("eval", "w1"), ("training", None), ("coordinator", None)):
            c = client(role, host)
            assert c.script_load("return 1")
            for attempt in (
                lambda c=c: c.script_flush(),
                lambda c=c: c.script_kill(),
                lambda c=c: c.function_load(
                    "#!lua name=evil\nredis.register_function('f', function() return 1 end)"
                ),
                lambda c=c: c.function_flush(),
                lambda c=c: c.function_delete("bgai"),
                lambda c=c: c.fcall("f", 0),
            ):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    attempt()
            c.close()
        # the stats a game user can still write (its scripts write them) are skipped when impossible
        mirror = ReplayMirror(ReplayStore(client("training"), keys, capacity=1000), K)
        assert mirror.refresh()["size"] == 30
        g1.set(
            keys.buffer("run-1").stats, json.dumps({"size": 1, "episodes": 2, "oldest": 1, "newest": 10**12})
        )
        assert mirror.refresh()["invalid"] and mirror.bad_stats == 1 and mirror.size == 30
        assert store.push(encode_episode(make_episode(20, 1))) == 2  # repaired from the list
        assert mirror.refresh()["size"] == 50
        for c in (admin, g1, e1):
            c.close()
