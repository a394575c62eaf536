"""Hostile episodes through the real buffer (fakeredis and a real redis-server): a decompression
bomb is refused before it inflates, and every malformed episode is refused whole on arrival, so the
trainer's mirror skips and counts it and keeps sampling."""

from __future__ import annotations

import io
import logging
import struct
import tracemalloc

import numpy as np
import pytest
import redis
import zstandard

from bgai.core import rules
from bgai.core.episodes import Episode
from bgai.errors import CorruptDataError
from bgai.store import codec
from bgai.store.codec import EP_HEADER_SIZE, MAGIC_E, encode_episode, expand_episode
from bgai.store.keys import Keys
from bgai.store.replay import ReplayStore
from bgai.store.sampler import ReplayMirror

K = 16  # max plays in these tests
KEYS = Keys("t3")
GIB = 1 << 30


def make_episode(length: int, seed: int) -> Episode:
    rng = np.random.default_rng(seed)
    n = rng.integers(1, K + 1, length)
    mask = np.arange(K)[None, :] < n[:, None]
    policy = rng.random((length, K)).astype(np.float32) * mask
    policy /= policy.sum(1, keepdims=True)
    steps = rng.integers(0, rules.NUM_STEPS, (length, K, 4)).astype(np.uint8)
    steps[~mask] = rules.NO_STEP
    return Episode(
        boards=rng.integers(-15, 16, (length, 28)).astype(np.int8),
        dice=rng.integers(0, 21, length).astype(np.int8),
        mask=mask,
        steps=steps,
        policy=policy,
        player=(np.arange(length) % 2).astype(np.int8),
        result=int(rng.choice([-3, -2, -1, 1, 2, 3])),
        model_version=0,
    )


def bomb(rows: int = 20, size: int = GIB) -> bytes:
    """A valid episode header over a ~32 KB zstd frame of `size` zero bytes that declares its
    content size (as `ZstdCompressor` does by default), compressed in chunks (no 1 GiB buffer)."""
    out = io.BytesIO()
    chunk = bytes(1 << 22)
    with zstandard.ZstdCompressor(level=1).stream_writer(out, size=size, closefd=False) as w:
        for _ in range(size // len(chunk)):
            w.write(chunk)
    header = struct.pack("<4sBbHIf", MAGIC_E, codec.EPISODE_FORMAT, 1, rows, 0, 0.0)
    return header + out.getvalue()


def test_a_zstd_bomb_is_skipped_without_inflating(r: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    store = ReplayStore(r, KEYS, capacity=100_000)
    mirror = ReplayMirror(store, K)
    good = [make_episode(30, i) for i in range(2)]
    evil = bomb()
    assert len(evil) < 64 * 1024 and zstandard.frame_content_size(evil[EP_HEADER_SIZE:]) == GIB
    store.push(encode_episode(good[0]))
    store.push(evil)  # under the 4 MiB push limit: the buffer takes it
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
