"""Hostile episodes through the real buffer (fakeredis and a real redis-server): a decompression
bomb is refused before it inflates, and every malformed episode is refused whole on arrival, so the
trainer's mirror skips and counts it and keeps sampling."""

from __future__ import annotations

import io
import logging
import struct
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
import redis
import zstandard
from synthetic_episodes import K, make_episode

from bgai.core import rules
from bgai.errors import CorruptDataError
from bgai.store import codec
from bgai.store.codec import EP_HEADER_SIZE, MAGIC_E, encode_episode, expand_episode
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore
from bgai.store.sampler import ReplayMirror

KEYS = Keys("t3")
GIB = 1 << 30


def bomb(rows: int = 20, size: int = GIB) -> bytes:
    """A valid episode header over a ~32 KB zstd frame of `size` zero bytes that declares its
    content size (as `ZstdCompressor` does by default), compressed in chunks (no 1 GiB buffer)."""
    out = io.BytesIO()
    chunk = bytes(1 << 22)
    cctx = zstandard.ZstdCompressor(level=1, write_checksum=True)
    with cctx.stream_writer(out, size=size, closefd=False) as w:
        for _ in range(size // len(chunk)):
            w.write(chunk)
    header = struct.pack("<4sBbHIf", MAGIC_E, codec.EPISODE_FORMAT, 1, rows, 0, 0.0)
    return header + out.getvalue()


def test_a_zstd_bomb_is_skipped_without_inflating(r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    store = ReplayStore(r, KEYS, capacity=100_000)
    mirror = ReplayMirror(store, K)
    good = [make_episode(30, i) for i in range(2)]
    evil = bomb(rows=40)  # 40 rows may take 41 KB in the buffer (codec.stored_bound): it goes in
    assert len(evil) < 64 * 1024 and zstandard.frame_content_size(evil[EP_HEADER_SIZE:]) == GIB
    store.push(encode_episode(good[0]))
    store.push(evil)  # under the push limits: the buffer takes it
    store.push(encode_episode(good[1]))
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING):
            mirror.refresh()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"refresh allocated {peak >> 20} MiB"  # never the declared 1 GiB
    assert mirror.skipped == 1 and "skipping replay episode 2" in caplog.text
    got = mirror.sample(200, np.random.default_rng(0))  # and it keeps sampling the good ones
    kept = np.concatenate([ep.boards for ep in good])
    assert (got["boards"][:, None, :] == kept[None]).all(-1).any(-1).all()


def test_a_bomb_is_refused_by_the_bound_its_row_count_allows() -> None:
    """20 rows of at most `MAX_ROW_PLAYS` plays cannot expand to 8 MiB: refused before inflating."""
    with pytest.raises(CorruptDataError, match="declares"):
        expand_episode(bomb(rows=20, size=8 << 20))


def test_a_memory_error_while_inflating_is_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Exhausted:
        def decompress(self, *args: object, **kwargs: object) -> bytes:
            raise MemoryError

    blob = encode_episode(make_episode(10, 0))
    monkeypatch.setattr(codec, "_zstd", lambda: Exhausted())
    with pytest.raises(CorruptDataError, match="memory"):
        expand_episode(blob)


# --- every episode validated whole on arrival --------------------------------------------------


def repack(raw: bytearray, checksum: bool = True) -> bytes:
    """An episode blob from an expanded form (header + offsets + rows), as a writer would."""
    body = zstandard.ZstdCompressor(level=3, write_checksum=checksum).compress(bytes(raw[EP_HEADER_SIZE:]))
    return bytes(raw[:EP_HEADER_SIZE]) + body


def _row0(raw: bytearray) -> int:
    return int(np.frombuffer(bytes(raw), np.uint32, 1, EP_HEADER_SIZE)[0])


def _set_offset(i: int, value: int) -> Callable[[bytearray], bytes]:
    def mutate(raw: bytearray) -> bytes:
        struct.pack_into("<I", raw, EP_HEADER_SIZE + 4 * i, value)
        return repack(raw)

    return mutate


def _set(fmt: str, where: Callable[[bytearray], int], value: object) -> Callable[[bytearray], bytes]:
    def mutate(raw: bytearray) -> bytes:
        struct.pack_into(fmt, raw, where(raw), value)
        return repack(raw)

    return mutate


def _zero_value(raw: bytearray) -> bytes:
    struct.pack_into("<6H", raw, _row0(raw) + 32, *([0] * 6))  # the value target, after n
    return repack(raw)


def _flip_checksum(raw: bytearray) -> bytes:
    blob = bytearray(repack(raw))
    blob[-1] ^= 0x01  # the frame's last 4 bytes are its content checksum
    return bytes(blob)


# each: a good episode's expanded form -> a blob that must be refused
MALFORMED: dict[str, Callable[[bytearray], bytes]] = {
    "a row shorter than its play count": _set("<H", lambda raw: _row0(raw) + 30, 17),
    "a row longer than its play count": _set("<H", lambda raw: _row0(raw) + 30, 0),
    "the last row declaring 60,000 plays": _set(
        "<H", lambda raw: int(np.frombuffer(bytes(raw), np.uint32, 30, EP_HEADER_SIZE)[-1]) + 30, 60_000
    ),
    "offsets inside the offset table": _set_offset(0, 0),
    "offsets going backwards": _set_offset(2, EP_HEADER_SIZE + 4 * 31 + 40),
    "outcome class 9": _set("<B", lambda raw: _row0(raw) + 28, 9),
    "a step index past NO_STEP": _set("<B", lambda raw: _row0(raw) + codec.ROW_FIXED, rules.NO_STEP + 1),
    "a point holding 100 checkers": _set("<b", lambda raw: _row0(raw) + 3, 100),
    "an all-zero value target": lambda raw: _zero_value(raw),
    "a NaN surprise": _set("<f", lambda raw: 12, float("nan")),
    "an infinite surprise": _set("<f", lambda raw: 12, float("inf")),
    "a negative surprise": _set("<f", lambda raw: 12, -0.5),
    "result 0": _set("<b", lambda raw: 5, 0),
    "result 7": _set("<b", lambda raw: 5, 7),
    "no rows": lambda raw: repack(bytearray(raw[:6] + b"\x00\x00" + raw[8:16] + struct.pack("<I", 20))),
    "a frame without a checksum": lambda raw: repack(raw, checksum=False),
    "a content checksum mismatch": _flip_checksum,
    "bytes after the frame": lambda raw: repack(raw) + b"\x00" * 8,
}


def good_raw(seed: int = 0) -> bytearray:
    return bytearray(expand_episode(encode_episode(make_episode(30, seed))))


def test_episodes_are_written_with_a_content_checksum() -> None:
    blob = encode_episode(make_episode(30, 0))
    assert zstandard.get_frame_parameters(blob[EP_HEADER_SIZE:]).has_checksum


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_episode_is_refused_whole_on_arrival(case: str) -> None:
    bad = MALFORMED[case](good_raw())
    with pytest.raises(CorruptDataError):
        expand_episode(bad)


def test_the_mirror_skips_and_counts_every_malformed_episode_and_keeps_sampling(r: redis.Redis) -> None:
    store = ReplayStore(r, KEYS, capacity=100_000)
    mirror = ReplayMirror(store, K)
    good = [make_episode(30, 100 + i) for i in range(2)]
    store.push(encode_episode(good[0], surprise=0.5))
    at_push = {"no rows"}  # refused by the push itself (and by its script), never stored
    for case, mutate in MALFORMED.items():
        if case in at_push:
            with pytest.raises(CorruptDataError, match="no rows"):
                store.push(mutate(good_raw()))
        else:
            store.push(mutate(good_raw()))
    store.push(encode_episode(good[1], surprise=0.5))
    rng = np.random.default_rng(0)
    for _ in range(3):  # neither the uniform nor the surprise draw ever meets a bad episode
        got = mirror.sample(300, rng, surprise_fraction=0.5)
        kept = np.concatenate([ep.boards for ep in good])
        assert (got["boards"][:, None, :] == kept[None]).all(-1).any(-1).all()
        assert set(np.unique(got["outcome"])) <= set(np.concatenate([ep.outcome for ep in good]))
    assert mirror.skipped == len(MALFORMED) - len(at_push) and mirror.size == 60


def test_a_writer_never_stores_a_surprise_readers_refuse() -> None:
    """A diverged value head gives NaN surprise: it is stored as 0, not as a refused episode."""
    for surprise in (float("nan"), float("inf"), -1.0):
        raw = expand_episode(encode_episode(make_episode(5, 0), surprise=surprise))
        assert codec.read_episode_header(raw).surprise == 0.0
