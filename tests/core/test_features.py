"""The extended input features and the escapes ones (`bgai.core.features`) against a slow Python
reference (`tests/features_reference.py`) on 600 random positions kept as a golden file, and by
hand."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from features_reference import GOLDEN, escape_features, extended, random_positions

from bgai.config import INPUT_VERSIONS, Config, ConfigError, ModelConfig, model_hash
from bgai.core import features, rules
from bgai.core.encoding import NUM_FEATURES, encode_as, num_inputs
from bgai.core.network import BgNet, init_params

NAMES = ["pips", "shots", "prime", "anchors", "back", "home", "blots"]


@pytest.fixture(scope="module")
def golden() -> tuple[np.ndarray, np.ndarray]:
    with np.load(GOLDEN, allow_pickle=False) as f:
        return f["boards"], f["features"]


def test_the_reference_makes_the_golden_file(golden: tuple[np.ndarray, np.ndarray]) -> None:
    boards, values = golden
    np.testing.assert_array_equal(boards, random_positions(11, len(boards)))
    np.testing.assert_allclose([extended(b.astype(np.int64)) for b in boards], values, atol=1e-12)
    # the file covers each feature's range, not a constant
    for i in range(features.NUM_EXTRA):
        assert len(np.unique(values[:, i])) > 1, i


def test_the_reference_makes_the_golden_escapes() -> None:
    with np.load(GOLDEN, allow_pickle=False) as f:
        boards, values = f["boards"], f["escapes"]
    np.testing.assert_allclose([escape_features(b.astype(np.int64)) for b in boards], values, atol=1e-12)
    for i in range(features.ESCAPE_FEATURES):
        assert len(np.unique(values[:, i])) > 5, i


def test_jax_escapes_equal_the_golden_file() -> None:
    with np.load(GOLDEN, allow_pickle=False) as f:
        boards, values = f["boards"], f["escapes"]
    got = np.asarray(jax.jit(features.escape_features)(jnp.asarray(boards.astype(np.int32))))
    for i, name in enumerate(["escapes", "contain", "their escapes", "their contain"]):
        bad = np.flatnonzero(np.abs(got[:, i] - values[:, i]) > 1e-5)
        assert not len(bad), f"{name} differs on {len(bad)} boards, first {boards[bad[0]].tolist()}"


def test_hand_counted_escapes_and_containment() -> None:
    # our back checker on idx 23 with nothing in front: the 23 rolls that move 7+ pips (nine
    # non-doubles both ways, 2-2 to 6-6); their point 7 pips in front of it blocks 6-1, 5-2, 4-3
    # (the doubles step over it): 17
    free = board({23: 1, 5: 14}, {0: 15})
    blocked = board({23: 1, 5: 14}, {16: 2, 0: 13})
    # our rearmost checker on idx 2, so its landings 7+ pips ahead are off the board (past the
    # 32 places a window is read from): open, 23 rolls; their points on idx 1 and 0 block 2-2: 22
    home = board({2: 15}, {23: 15})
    home_blocked = board({2: 15}, {1: 2, 0: 2, 23: 11})
    for b, want in ((free, 23), (blocked, 17), (home, 23), (home_blocked, 22)):
        assert float(features.escape_features(jnp.asarray(b))[0]) * 36 == pytest.approx(want)
        assert escape_features(b.astype(np.int64))[0] * 36 == pytest.approx(want)  # the reference
    # our full prime on idx 2..7 holds their checker on idx 0 (and any from the bar): it has no
    # escaping roll, and our containment is complete
    prime = board({2: 2, 3: 2, 4: 2, 5: 2, 6: 2, 7: 2, 12: 3}, {0: 1, 23: 14})
    f = np.asarray(features.escape_features(jnp.asarray(prime)))
    assert f[1] == pytest.approx(1.0) and f[2] == pytest.approx(0.0)
    # a side with no checker on the board has nothing to escape: 1
    assert float(features.escape_features(jnp.asarray(board({}, {0: 2})))[0]) == 1.0


def test_jax_features_equal_the_golden_file(golden: tuple[np.ndarray, np.ndarray]) -> None:
    boards, values = golden
    got = np.asarray(features.extended_features(jnp.asarray(boards.astype(np.int32))))
    for i in range(features.NUM_EXTRA):
        side, k = divmod(i, features.SIDE_FEATURES)
        name = NAMES[k] if side < 2 else ["pip difference", "contact"][k]
        bad = np.flatnonzero(np.abs(got[:, i] - values[:, i]) > 1e-5)
        assert not len(bad), (
            f"feature {i} ({name}) differs on {len(bad)} boards, first {boards[bad[0]].tolist()}"
        )


def board(mine: dict[int, int], theirs: dict[int, int], **extra: int) -> np.ndarray:
    b = np.zeros(rules.BOARD_SIZE, np.int32)
    for p, n in mine.items():
        b[p] = n
    for p, n in theirs.items():
        b[p] = -n
    for name, n in extra.items():
        b[getattr(rules, name.upper())] = n
    b[rules.OFF] = 15 - b[:24].clip(0).sum() - b[rules.BAR]
    b[rules.OPP_OFF] = -(15 - (-b[:24]).clip(0).sum() + b[rules.OPP_BAR])
    return b


def test_hand_counted_shots() -> None:
    # a blot six pips in front of one of their checkers: 17 rolls (eleven with a 6, 5-1, 4-2,
    # 3-3, 2-2). With our points 2 and 4 pips in front of their checker, 4-2 (either way) and
    # 2-2 are blocked: 11 + 2 (5-1) + 1 (3-3) = 14
    free = board({10: 1}, {4: 1})
    walled = board({10: 1, 6: 2, 8: 2}, {4: 1})
    for b, want in ((free, 17), (walled, 14)):
        shots = float(features.side_features(jnp.asarray(b))[1]) * 36
        assert shots == pytest.approx(want), (b.tolist(), shots)
    # their checker on the bar: only shots from the bar count (our blot on idx 3: a 4, 3-1,
    # 2-2, 1-1: 11 + 2 + 1 + 1 = 15), not the checker on idx 1 two pips behind it
    on_bar = board({3: 1}, {1: 1}, opp_bar=-1)
    assert float(features.side_features(jnp.asarray(on_bar))[1]) * 36 == pytest.approx(15)


def test_the_raw_units_by_hand() -> None:
    # Tesauro's four units a point (n >= 1, n >= 2, n >= 3, (n - 3) / 2), the mover's 24 points,
    # then the opponent's, then the bars / 2 and the checkers off / 15
    b = board({0: 1, 5: 2, 7: 3, 12: 6}, {23: 1, 18: 5}, bar=3, opp_bar=-2)
    f = np.asarray(encode_as("raw", jnp.asarray(b)))
    want = np.zeros(NUM_FEATURES, np.float32)
    for side, points in ((0, {0: 1, 5: 2, 7: 3, 12: 6}), (96, {23: 1, 18: 5})):
        for p, n in points.items():
            want[side + 4 * p : side + 4 * p + 4] = [n >= 1, n >= 2, n >= 3, max(n - 3, 0) / 2]
    want[192:] = [3 / 2, 2 / 2, 0 / 15, 7 / 15]
    np.testing.assert_array_equal(f, want)


def test_the_start_position_by_hand() -> None:
    start = jnp.asarray(rules.start_board())
    f = np.asarray(features.extended_features(start))
    mine, theirs = f[:7], f[7:14]
    np.testing.assert_allclose(mine, theirs)  # symmetric
    np.testing.assert_allclose(mine, [1.67, 0.0, 1 / 6, 1 / 2, 2 / 5, 1 / 6, 0.0], atol=1e-6)
    assert f[14] == 0.0 and f[15] == 1.0  # even pips, contact


def test_flipping_swaps_the_sides(golden: tuple[np.ndarray, np.ndarray]) -> None:
    boards = jnp.asarray(golden[0][:64].astype(np.int32))
    f, g = (np.asarray(features.extended_features(x)) for x in (boards, rules.flip(boards)))
    np.testing.assert_allclose(g[:, :7], f[:, 7:14])
    np.testing.assert_allclose(g[:, 14], -f[:, 14], atol=1e-6)
    np.testing.assert_array_equal(g[:, 15], f[:, 15])


def test_the_inputs_choice_shapes_the_net_and_its_hash() -> None:
    assert INPUT_VERSIONS["extended"] == features.VERSION
    assert INPUT_VERSIONS["escapes"] == features.ESCAPE_VERSION
    boards = jnp.asarray(rules.start_board())[None]
    assert encode_as("raw", boards).shape == (1, NUM_FEATURES)
    assert encode_as("extended", boards).shape == (1, num_inputs("extended")) == (1, NUM_FEATURES + 16)
    assert encode_as("escapes", boards).shape == (1, num_inputs("escapes")) == (1, NUM_FEATURES + 20)
    params = init_params(BgNet((8,), "extended"), jax.random.key(0))
    assert params["params"]["Dense_0"]["kernel"].shape == (num_inputs("extended"), 8)
    raw = Config()
    ext = dataclasses.replace(raw, model=ModelConfig(inputs="extended"))
    esc = dataclasses.replace(raw, model=ModelConfig(inputs="escapes"))
    assert len({model_hash(raw), model_hash(ext), model_hash(esc)}) == 3
    with pytest.raises(ConfigError, match="model.inputs"):
        ModelConfig(inputs="gnubg")


def test_value_heads_by_class_value_races_with_their_own_head() -> None:
    from bgai.store.budget import param_count

    net = BgNet((8,), "extended", "by_class")
    params = init_params(net, jax.random.key(1))
    n = sum(x.size for x in jax.tree.leaves(params))
    assert n == param_count((8,), "extended", "by_class") == param_count((8,), "extended") + 9 * 6
    race = jnp.asarray(np.stack([board({0: 5, 3: 10}, {20: 15}), board({5: 15}, {22: 15})]))
    contact = jnp.asarray(np.stack([np.asarray(rules.start_board())]))
    bumped = jax.tree.map(lambda x: x, params)
    bumped["params"]["race_value"]["bias"] = params["params"]["race_value"]["bias"] + 1.0
    for boards, moved in ((race, True), (contact, False)):
        a, b = net.apply(params, boards)[1], net.apply(bumped, boards)[1]
        assert bool(jnp.allclose(b, a + 1.0)) is moved and bool(jnp.allclose(a, b)) is not moved
    one = dataclasses.replace(Config(), model=ModelConfig())
    by_class = dataclasses.replace(one, model=ModelConfig(value_heads="by_class"))
    assert model_hash(one) != model_hash(by_class)


def test_a_race_net_values_races_with_weights_of_its_own() -> None:
    from bgai.store.budget import param_count

    net = BgNet((8,), "extended", "race_net", (4,))
    params = init_params(net, jax.random.key(2))
    n = sum(x.size for x in jax.tree.leaves(params))
    own = num_inputs("extended") * 4 + 4 + 5 * 6  # its layer and its outcome head
    assert n == param_count((8,), "extended", "race_net", (4,)) == param_count((8,), "extended") + own
    race = jnp.asarray(np.stack([board({0: 5, 3: 10}, {20: 15}), board({5: 15}, {22: 15})]))
    contact = jnp.asarray(np.stack([np.asarray(rules.start_board())]))
    for layer, races_move, contact_moves in (("race_0", True, False), ("Dense_0", False, True)):
        bumped = jax.tree.map(lambda x: x, params)
        bumped["params"][layer]["kernel"] = params["params"][layer]["kernel"] + 0.5
        for boards, moved in ((race, races_move), (contact, contact_moves)):
            a, b = net.apply(params, boards)[1], net.apply(bumped, boards)[1]
            assert bool(jnp.allclose(a, b)) is not moved, (layer, boards.shape)
    base = Config()
    with_net = dataclasses.replace(base, model=ModelConfig(value_heads="race_net", race_hidden=(64,)))
    assert model_hash(base) != model_hash(with_net)
    assert model_hash(base) == model_hash(dataclasses.replace(base, model=ModelConfig()))
    for bad in ({"value_heads": "race_net"}, {"race_hidden": (64,)}):
        with pytest.raises(ConfigError, match="model.race_hidden"):
            ModelConfig(**bad)  # type: ignore[arg-type]
