"""The on-disk spool of a game worker: files written whole, read back in order, and anything
corrupt or foreign in the directory refused with a logged reason and set aside (never a crash).
No Redis here except a port nobody listens on (the push that fails and makes the spool persist)."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import pytest
import redis
from redis_server import free_port
from synthetic_episodes import make_episode

from bgai.config import RedisConfig
from bgai.store.client import connect
from bgai.store.codec import encode_episode
from bgai.store.disk_spool import MAGIC, DiskSpool, SpoolDirError, Spooled, encode_file, worker_dir
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore
from bgai.store.spool import Spool

PREFIX = "bgai"
WID = "host:game:0"


def episodes(n: int, first: int = 0, source: str = "host:game:0/abc", run: str = "run-1") -> list[Spooled]:
    return [Spooled(source, run, first + i, encode_episode(make_episode(5 + i, first + i))) for i in range(n)]


def opened(directory: Path) -> tuple[DiskSpool, str, list[Spooled]]:
    disk = DiskSpool(directory, PREFIX)
    source, items = disk.open(WID)
    return disk, source, items


def test_what_is_written_comes_back_in_order_with_the_same_source(tmp_path: Path) -> None:
    d = worker_dir(tmp_path, PREFIX, WID)
    assert d == tmp_path / PREFIX / "host_game_0"
    disk, source, items = opened(d)
    assert items == [] and source.startswith(f"{WID}/")
    later, first = episodes(3, first=3, source=source), episodes(3, first=0, source=source)
    disk.write(later)
    disk.write(first)
    assert {it.file for it in first} == {"000000000000-000000000002.spool"}
    (d / ".000000000009-000000000009.spool.tmp").write_bytes(b"half a write")  # a crash's leftover
    disk.close()
    disk, again, items = opened(d)
    assert again == source  # every start of the worker pushes as one source
    assert [(it.seq, it.blob, it.run) for it in items] == [(it.seq, it.blob, it.run) for it in first + later]
    assert not list(d.glob("*.tmp")) and disk.refused == 0
    disk.remove(["000000000000-000000000002.spool"])
    disk.close()
    assert [it.seq for it in opened(d)[2]] == [3, 4, 5]


def test_corrupt_and_foreign_files_are_set_aside_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "spool"
    disk, source, _ = opened(d)
    good = episodes(2, first=100, source=source)
    disk.write(good)
    disk.close()
    whole = encode_file(PREFIX, episodes(2, first=0, source=source))
    flipped = bytearray(whole)
    flipped[-3] ^= 0x40
    rest = whole[12:].replace(b'"first": 0', b'"first": 5')  # a header that lies about its name
    forged = MAGIC + zlib.crc32(rest).to_bytes(4, "little") + rest
    bad_episode = encode_file(PREFIX, [Spooled(source, "run-1", 20, b"BGEP" + b"\x03" + b"\x00" * 40)])
    hostile = {
        "000000000000-000000000001.spool": whole[: len(whole) // 2],  # truncated
        "000000000002-000000000003.spool": bytes(flipped),  # a bit flipped
        "000000000004-000000000005.spool": b"\x00" * 64,  # garbage
        "000000000006-000000000007.spool": encode_file("other", episodes(2, first=6)),  # another prefix
        "000000000030-000000000031.spool": forged,  # checksum fine, seqs not its name's
        "000000000020-000000000020.spool": bad_episode,  # checksum fine, not a valid episode
        "notes.txt": b"an operator's file",  # not a spool file at all
    }
    for name, data in hostile.items():
        (d / name).write_bytes(data)
    (d / "source").write_bytes(b"\xff\xfe not utf-8")
    with caplog.at_level(logging.WARNING):
        disk, new_source, items = opened(d)
    assert [(it.seq, it.blob) for it in items] == [(it.seq, it.blob) for it in good]  # good ones kept
    assert items[0].source == source  # pushed under the source they were numbered in
    assert new_source != source  # the unreadable source file was replaced (and set aside)
    for name in hostile:
        assert (d / f"{name}.bad").exists() and not (d / name).exists()
    assert (d / "source.bad").exists() and (d / "source").read_text() == new_source
    assert disk.refused == len(hostile) + 1
    reasons = " | ".join(caplog.messages)
    for why in ("checksum mismatch", "bad magic", "prefix 'other'", "disagree", "not a spool file name"):
        assert why in reasons, why
    disk.close()
    assert [it.seq for it in opened(d)[2]] == [100, 101]  # what was set aside stays aside


def test_one_process_per_directory_and_a_clear_error_for_an_unusable_one(tmp_path: Path) -> None:
    d = tmp_path / "spool"
    first, _, _ = opened(d)
    with pytest.raises(SpoolDirError, match="in use by another process"):
        opened(d)
    first.close()
    opened(d)[0].close()  # free again once the holder is gone
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SpoolDirError, match="spool directory"):
        opened(tmp_path / "file" / "spool")


def test_a_failed_push_writes_the_spool_and_a_restart_reloads_it_bounded(tmp_path: Path) -> None:
    r = connect(RedisConfig(port=free_port(), socket_timeout_s=0.5))  # nobody listens: Redis is down
    replay = ReplayStore(r, Keys(PREFIX), 10_000)
    spool = Spool(replay, WID, capacity=4, disk=DiskSpool(tmp_path, PREFIX))
    spool.open()
    spool.synced = True  # as after `sync` (Redis had taken nothing of this source)
    blobs = [it.blob for it in episodes(6)]
    spool.add(blobs, run="run-1")
    with pytest.raises(redis.ConnectionError):
        spool.drain()
    assert [it.blob for it in spool.items] == blobs[2:] and spool.dropped == 2  # the newest 4
    assert all(it.file is not None for it in spool.items)
    spool.close()
    again = Spool(replay, WID, capacity=3, disk=DiskSpool(tmp_path, PREFIX))  # a smaller bound now
    again.open()
    assert again.source == spool.source and [it.blob for it in again.items] == blobs[3:]
    assert again.dropped == 1 and again.restored == 3 and again.next_seq == 6
    assert again.discard_run("run-2") == 3 and len(again) == 0  # the fleet moved to another run
    assert not list(tmp_path.glob("*.spool"))
    again.close()
