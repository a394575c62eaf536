"""The buffer's push script under damage and hostile input (fakeredis and a real redis-server):
it checks everything before its first write, so a refused push leaves no trace; a lost list,
a missing victim or garbage stats are repaired, never half-applied, and no push evicts itself;
an episode of a run the fleet left is not stored; the trainer's mirror skips impossible stats."""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest
import redis
from synthetic_episodes import K, make_episode

from bgai.store import codec
from bgai.store.codec import MAGIC_E, encode_episode, read_episode_header
from bgai.store.keys import NO_RUN, Keys
from bgai.store.replay import OTHER_RUN, REFUSED, ReplayStore
from bgai.store.sampler import ReplayMirror

KEYS = Keys("t4")
BUF = KEYS.buffer(NO_RUN)
LENGTHS = [30, 40, 20, 50, 35, 45, 25, 30]


def snapshot(r: redis.Redis) -> dict[bytes, object]:
    """Every key and its value (strings, lists, hashes): to show that nothing changed."""
    out: dict[bytes, object] = {}
    for k in r.scan_iter(match="*"):
        t = r.type(k)
        t = t.decode() if isinstance(t, bytes) else t
        out[k] = {"string": r.get, "list": lambda x: r.lrange(x, 0, -1), "hash": r.hgetall}[t](k)
    return out


def consistent(r: redis.Redis, store: ReplayStore) -> dict:
    """The stats agree with the list and with the stored episodes' row counts; returns them."""
    st = store.stats()
    assert "invalid" not in st, st
    ids = [int(x) for x in r.lrange(BUF.episodes, 0, -1)]
    assert ids == list(range(st["oldest"], st["newest"] + 1)) and len(ids) == st["episodes"]
    blobs = store.episodes(ids)
    assert st["size"] == sum(read_episode_header(b).rows for b in blobs if b is not None)
    assert st["size"] <= store.capacity or st["episodes"] == 1
    return st


def fill(store: ReplayStore, lengths: list[int] = LENGTHS, seed: int = 0) -> list[int]:
    return [store.push(encode_episode(make_episode(n, seed + i))) for i, n in enumerate(lengths)]


def test_a_missing_victim_is_counted_not_an_error_half_way(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=100)
    fill(store)
    before = consistent(r, store)
    r.delete(BUF.episode(before["oldest"]))  # the next victim's blob is gone
    new = store.push(encode_episode(make_episode(60, 99)))  # evicts it and more: no error
    st = consistent(r, store)
    assert st["newest"] == new and st["repaired"] == 1
    assert st["pushed_episodes"] == before["pushed_episodes"] + 1


def test_a_lost_list_is_rebuilt_and_no_push_evicts_itself(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=100)
    fill(store)
    before = consistent(r, store)
    r.delete(BUF.episodes)
    for i in range(4):
        new = store.push(encode_episode(make_episode(30, 50 + i)))
        st = consistent(r, store)
        assert st["newest"] == new and r.exists(BUF.episode(new))  # it stays: the newest
    assert st["repaired"] == 1 and st["oldest"] > before["oldest"] and st["size"] > 0


GARBAGE = ["garbage", "[1, 2]", '{"size": "x"}', '{"size": -5, "episodes": 1}', "null"]


@pytest.mark.parametrize("stats", GARBAGE)
def test_garbage_stats_are_rebuilt_from_the_list(r: redis.Redis, stats: str) -> None:
    store = ReplayStore(r, KEYS, capacity=100)
    fill(store)
    listed = r.lrange(BUF.episodes, 0, -1)
    r.set(BUF.stats, stats)
    assert store.stats()["invalid"]  # a reader sees they are impossible
    new = store.push(encode_episode(make_episode(30, 70)))
    st = consistent(r, store)
    assert st["repaired"] == 1 and st["newest"] == new
    assert int(listed[-1]) + 1 == new  # the ids go on where they were


def header(rows: int) -> bytes:
    return struct.pack("<4sBbHIf", MAGIC_E, codec.EPISODE_FORMAT, 1, rows, 0, 0.0)


def test_every_check_comes_before_the_first_write(r: redis.Redis) -> None:
    """Run straight (as a hostile game user can), each refused push leaves every key as it was."""
    store = ReplayStore(r, KEYS, capacity=100)
    fill(store)
    store.push(encode_episode(make_episode(30, 80)), source="w/1", seq=5)
    good = encode_episode(make_episode(30, 81))
    before = snapshot(r)
    refused = {
        "no rows": (header(0) + good[16:], 0),
        "rows the pusher does not say": (good, 31),
        "more bytes than its rows may take": (header(2) + bytes(4000), 2),
        "not an episode": (b"PKL\x00" + good[4:], 30),
        "too short": (b"BGEP", 30),
    }
    for what, (blob, rows) in refused.items():
        with pytest.raises(redis.ResponseError, match="episode refused"):
            store.send(blob, rows, None, "w/1", 6, NO_RUN)
        assert snapshot(r) == before, what
    assert store.send(good, 30, None, "w/1", 5, NO_RUN) == -1  # landed before: nothing written
    assert snapshot(r) == before
    r.set(KEYS.run_id, "run-b")
    assert store.send(good, 30, None, "w/1", 6, NO_RUN) == OTHER_RUN  # the fleet left run "-"
    r.delete(KEYS.run_id)
    assert snapshot(r) == before
    assert store.send(good, 30, None, "w/1", 6, NO_RUN) > 0  # the same push, now valid


def test_the_client_refuses_what_the_script_would(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=1000)
    good = encode_episode(make_episode(30, 1))
    got = store.push_many([good, header(2) + bytes(4000), good], source="w/2", seqs=[0, 1, 2])
    assert got[1] == REFUSED and got[0] > 0 and got[2] == got[0] + 1  # the rest still lands
    assert consistent(r, store)["episodes"] == 2


def test_an_episode_of_a_run_the_fleet_left_is_not_stored(r: redis.Redis) -> None:
    r.set(KEYS.run_id, "run-a")
    game = ReplayStore(r, KEYS, capacity=1000, run_id="run-a")  # the run it plays for
    assert game.push(encode_episode(make_episode(30, 1))) == 1
    r.set(KEYS.run_id, "run-b")  # `bgai-runs start`: one write
    assert game.push(encode_episode(make_episode(30, 2))) == OTHER_RUN
    assert game.push_many([encode_episode(make_episode(30, 3))], source="w/3", seqs=[0]) == [OTHER_RUN]
    assert not [k for k in r.scan_iter(match=KEYS.buffer("run-b").pattern)]  # the new run: untouched
    assert ReplayStore(r, KEYS, 1000).stats()["episodes"] == 0  # what the trainer now reads
    assert r.llen(KEYS.buffer("run-a").episodes) == 1  # the old run: frozen as it was


@pytest.mark.parametrize(
    "stats",
    [
        "garbage",
        "[1, 2]",
        '{"size": "30", "episodes": 1, "oldest": 1, "newest": 1}',
        '{"size": 30, "episodes": 3, "oldest": 1, "newest": 1000000000000}',  # 1e12 ids to fetch
        '{"size": 3000, "episodes": 3000, "oldest": 1, "newest": 3000}',  # more than capacity allows
        '{"size": 30, "episodes": true, "oldest": 1, "newest": 1}',
    ],
)
def test_the_mirror_skips_impossible_stats(r: redis.Redis, stats: str) -> None:
    store = ReplayStore(r, KEYS, capacity=200)
    mirror = ReplayMirror(store, K)
    fill(store, [30, 40, 20])
    mirror.refresh()
    assert mirror.size == 90
    good = r.get(BUF.stats)
    r.set(BUF.stats, stats)
    t = time.monotonic()
    got = mirror.refresh()
    assert time.monotonic() - t < 5.0  # never an endless fetch
    assert got["invalid"] and mirror.bad_stats == 1 and mirror.size == 90  # skipped, kept
    mirror.draw(10, np.random.default_rng(0))  # still samples what it had
    r.set(BUF.stats, good)
    assert mirror.refresh()["size"] == 90 and mirror.size == 90


def test_stats_read_back_as_written(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=100)
    fill(store)
    st = store.stats()
    assert json.loads(r.get(BUF.stats))["size"] == st["size"] and st["run"] == NO_RUN
    assert st["capacity"] == 100 and st["repaired"] == 0
