"""Hostile and bad input: each gets a clear error or a logged refusal, and loses nothing.

Where each case of the list is proven:
- a corrupt weights blob; weights of another model: tests/store/test_store.py
  (test_weights_codec_refuses_corrupt_and_foreign_blobs, test_follower_keeps_last_good_model);
- a truncated or garbage episode: below, and test_a_corrupt_episode_is_skipped_not_fatal;
- malformed YAML, an unknown key, a value of the wrong type: tests/test_config.py, and below
  through a role's command line (exit 2, the key named);
- a YAML alias bomb (exit 2 at once, bounded memory), a config file over 1 MiB, a size, count or
  duration past its ceiling, an empty path, a password that would show in an error (never
  echoed): tests/test_config.py;
- a wrong Redis password: below (a role process exits 2 saying so) and tests/store/test_acl.py;
- a run id that does not exist: tests/runs/test_runs.py (test_bad_input_is_refused_with_exit_2);
- eval weights a worker refuses (another model, corrupt, expired): its slice released to the
  others, the version skipped, no tight loop: tests/store/test_evals.py,
  tests/roles/test_eval_worker.py;
- a checkpoint of another model shape: tests/train/test_checkpoint.py and tests/runs;
- a corrupt newest checkpoint (truncated, garbage), a crash's leftover temporary file: set aside
  as `.bad` / removed, the newest good one restored: tests/train/test_checkpoint.py,
  tests/roles/test_training_worker.py; a refusal under supervisord is not restart-looped:
  tests/test_supervisor_conf.py;
- an oversized episode: below (refused by the client and by the push script);
- a corrupt, truncated or foreign file in a game worker's spool directory (bad magic or checksum,
  another prefix, seqs that disagree with its name, an invalid episode inside, an unknown file, an
  unreadable source name: each logged and set aside as `.bad`, the good files pushed), a crash's
  leftover temporary file (removed), a spool directory held by another process or not a
  directory (a clear refusal): tests/store/test_disk_spool.py;
- a zstd bomb (a 32 KB episode declaring 1 GiB), MemoryError while expanding:
  tests/store/test_hostile_episodes.py;
- an episode with a row length off its play count, offsets inside the table or backwards, an
  outcome class, step index, board or result out of range, a NaN / infinite / negative surprise,
  no rows, no zstd checksum or a wrong one, bytes after the frame (each refused on arrival; the
  mirror skips and counts them and keeps sampling): tests/store/test_hostile_episodes.py; a
  buffer of nothing but such episodes (the trainer waits): tests/roles/test_training_worker.py;
- weights holding a NaN or an infinity (never encoded, taken, checkpointed or published; the
  trainer rolls back): tests/store/test_store.py, tests/train/test_checkpoint.py,
  tests/roles/test_training_worker.py;
- a worker clock 5 minutes behind or ahead (still live, scraped, its eval slices kept), a second
  process under a live worker's id, e.g. two hosts with one hostname (refused, exit 2; never both
  holding the trainer lock or one eval slice), an unreadable or owner-less registry record:
  tests/roles/test_liveness.py, tests/store/test_registry.py, tests/store/test_evals.py;
- a publish by a trainer that lost the lock (hung past its TTL), or by anyone without it while a
  trainer holds it; initial weights offered over an existing version (each refused, nothing
  written): tests/store/test_publish_fence.py, tests/roles/test_training_worker.py;
- no checkpoint of the run and Redis's weights missing or of another model (the trainer refuses,
  exit 2, one line; never fresh weights over the model): tests/roles/test_training_worker.py;
- a Redis that lost its last writes (the trainer skips the lost version numbers), an unreadable
  publish record (logged and ignored): tests/roles/test_training_worker.py;
- pushed straight to the buffer's script (past the client's checks): an episode of no rows, of a
  row count its header does not state, of more bytes than its rows may take, not an episode, too
  short; a re-sent seq; an episode of a run the fleet left (each refused before any write, every
  key as it was): tests/store/test_replay_push.py;
- a buffer damaged by hand or by a hostile user: a victim's blob deleted, the episode list
  deleted, stats that are garbage, a JSON list, non-integer, negative or null (repaired from the
  list by the next push, never half-applied, no push evicting itself): tests/store/test_replay_push.py;
- impossible buffer stats as the trainer reads them (garbage, a list, a string or a bool for a
  count, 10^12 ids to fetch, more episodes than the capacity allows): a skip, the mirror kept, no
  crash or endless fetch: tests/store/test_replay_push.py, tests/store/test_acl.py;
- `bgai-runs start` / `resume` while workers push and evaluate (nothing of the old run lands in
  the new one, the old run's keys all go, stats agree with the list): tests/store/test_run_switch.py;
- a game or eval worker host writing another host's registry record, the trainer's, or the
  coordinator's index; one host's password for another host's user; any role's SCRIPT FLUSH,
  SCRIPT KILL, FUNCTION LOAD / FLUSH / DELETE, FCALL (each refused): tests/store/test_acl.py;
- Redis out of memory (its maxmemory reached, noeviction): a push refused with nothing written,
  read as "unavailable", the role loop backing off (counted), the spool kept and pushed once
  there is room, the same process going on: tests/roles/test_redis_oom.py, tests/chaos;
- a password in the config file, in BGAI_* env, by --set or in a password file, bound for MLflow
  (masked in the params and in config.yaml, the resolved config, never the file as given; nothing
  MLflow stored holds it): tests/runs/test_runs.py; a password file missing, empty, binary, of
  two lines or over 4 KiB, or given beside a password (exit 2 naming the file, never its
  contents): tests/test_config.py;
- a program wanting another's password from its environment (none there: not Redis's, MLflow's
  or Prometheus's, nor a bgai role's, on the local fleet and on every deployed host):
  tests/e2e/test_fleet_supervisord.py, tests/test_supervisor_conf.py, tests/deploy/test_playbook.py,
  tests/deploy/test_deploy.py;
- a Redis certificate of another CA or for another host name, a client without a certificate,
  plain TCP to the TLS port (each refused): tests/store/test_tls.py, tests/deploy/test_deploy.py;
  MLflow without its password (401): tests/deploy/test_deploy.py; /metrics asked on an address
  it was not told to serve (loopback by default): tests/test_cli.py, tests/deploy/test_deploy.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis
from redis_server import redis_server

from bgai.core.episodes import Episode
from bgai.errors import CorruptDataError, IncompatibleError
from bgai.store.codec import MAX_EPISODE_BYTES, encode_episode, expand_episode
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore

BIN = Path(sys.executable).parent
FLEET_YAML = Path(__file__).resolve().parent / "fleet.yaml"


def episode(rows: int = 20) -> Episode:
    rng = np.random.default_rng(rows)
    k = 8
    return Episode(
        boards=rng.integers(-2, 3, size=(rows, 28)).astype(np.int8),
        dice=rng.integers(0, 21, size=rows).astype(np.int8),
        mask=np.ones((rows, k), bool),
        steps=np.zeros((rows, k, 4), np.uint8),
        policy=np.full((rows, k), 1 / k, np.float32),
        player=(np.arange(rows) % 2).astype(np.int8),
        result=1,
        model_version=0,
    )


def test_truncated_or_garbage_episodes_are_refused() -> None:
    blob = encode_episode(episode())
    for bad in (blob[:10], blob[: len(blob) // 2], b"BGEP" + b"\x00" * 40, b"garbage" * 20):
        with pytest.raises((CorruptDataError, IncompatibleError)):
            expand_episode(bad)


def test_an_oversized_episode_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    keys = Keys("hostile")
    with redis_server(tmp_path / "redis") as port:
        r = redis.Redis(port=port)
        store = ReplayStore(r, keys, capacity=10_000)
        blob = encode_episode(episode())
        huge = blob + b"\x00" * MAX_EPISODE_BYTES
        with pytest.raises(CorruptDataError, match="refused"):
            store.push(huge)
        assert r.get(store.buffer_keys().stats) is None  # nothing stored
        assert store.push(blob) == 1  # a normal episode still goes in
        r.close()


def test_a_wrong_redis_password_exits_2_saying_so(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", extra=("--requirepass", "right-password")) as port:
        out = subprocess.run(
            [BIN / "bgai", "game-worker", "--config", str(FLEET_YAML), "--worker-id", "hostile:game"],
            env={"BGAI_REDIS__PORT": str(port), "BGAI_REDIS__PASSWORD": "wrong", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "refused by Redis" in out.stderr or "refused by Redis" in out.stdout


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("selfplay: [unclosed\n", "yaml"),
        ("selfplay:\n  batch_sise: 8\n", "selfplay.batch_sise"),
        ("selfplay:\n  batch_size: eight\n", "selfplay.batch_size"),
    ],
)
def test_a_bad_config_stops_a_role_with_exit_2_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    out = subprocess.run(
        [BIN / "bgai", "game-worker", "--config", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2
    assert key in (out.stdout + out.stderr).lower() or str(bad) in out.stdout + out.stderr


def test_redis_off_this_host_needs_a_password() -> None:
    from bgai.config import load_config
    from bgai.errors import ConfigError

    with pytest.raises(ConfigError, match="redis.password"):
        load_config(None, env={}, overrides={"redis.host": "10.0.0.5"})
    assert load_config(
        None, env={}, overrides={"redis.host": "10.0.0.5", "redis.password": "x"}
    ).redis.password


def test_data_formats_are_not_pickle(tmp_path: Path) -> None:
    """Every byte format bgai writes starts with its own magic and is no pickle stream (pickle
    protocol 2+ starts with 0x80); a pickle stream offered as any of them is refused."""
    import jax

    from bgai.config import Config
    from bgai.core.network import BgNet, init_params
    from bgai.runs.manager import train_template
    from bgai.store.codec import MAGIC_E, MAGIC_W, decode_weights, encode_weights
    from bgai.train.checkpoint import MAGIC, load_checkpoint, save_checkpoint

    params = init_params(BgNet((8,)), jax.random.key(0))
    weights = encode_weights(params, version=1, step=1, model_hash="m", config_hash="c")
    ep = encode_episode(episode())
    ckpt = save_checkpoint(tmp_path, 1, train_template(Config()), {"model_hash": "m"})
    raw = ckpt.read_bytes()
    assert weights.startswith(MAGIC_W) and ep.startswith(MAGIC_E) and raw.startswith(MAGIC)
    n = int.from_bytes(raw[len(MAGIC) : len(MAGIC) + 4], "big")
    assert raw[len(MAGIC) + 4 + n] != 0x80  # the body is msgpack (a map), not a pickle stream
    evil = b"\x80\x04\x95" + b"\x00" * 64  # the start of a pickle protocol-4 stream
    with pytest.raises((CorruptDataError, IncompatibleError)):
        decode_weights(evil, params, "m")
    with pytest.raises((CorruptDataError, IncompatibleError)):
        expand_episode(evil)
    bad = tmp_path / "ckpt_000000002.bgai"
    bad.write_bytes(evil)
    with pytest.raises(CorruptDataError):
        load_checkpoint(bad, train_template(Config()))


def test_status_and_runs_say_in_one_line_what_redis_refused(tmp_path: Path) -> None:
    """`bgai status` and `bgai-runs` without credentials, with a wrong password, or with Redis
    down: one line naming what to set, exit 2, no traceback."""
    from click.testing import CliRunner

    from bgai.cli.main import cli
    from bgai.cli.runs import runs

    def both(env: dict[str, str]) -> list[str]:
        env = {"BGAI_MLFLOW__TRACKING_URI": "http://127.0.0.1:9", **env}
        outs = []
        for group, args in ((cli, ["status"]), (runs, ["pause"])):
            out = CliRunner().invoke(group, [*args, "--config", str(FLEET_YAML)], env=env)
            assert out.exit_code == 2 and "Traceback" not in out.output, (args, out.output)
            assert len(out.output.strip().splitlines()) == 1, out.output
            outs.append(out.output)
        return outs

    with redis_server(tmp_path / "redis", extra=("--requirepass", "right-password")) as port:
        for env in ({}, {"BGAI_REDIS__PASSWORD": "wrong"}):
            for line in both({"BGAI_REDIS__PORT": str(port), **env}):
                assert f"Redis at 127.0.0.1:{port} refused the default user" in line, line
                assert "BGAI_REDIS__PASSWORD_FILE" in line, line
    for line in both({"BGAI_REDIS__PORT": str(port)}):  # the server is gone
        assert f"Redis at 127.0.0.1:{port} is unreachable" in line, line
