"""bgai.config: defaults, layering, strict types, validation, hashes."""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import tracemalloc
from pathlib import Path

import pytest

from bgai.config import (
    SECTIONS,
    Config,
    ModelConfig,
    TrainingConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    load_config,
    model_hash,
)
from bgai.errors import BgaiError, ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    cfg = load_config(None, env={})
    assert cfg == Config()
    assert cfg.model.hidden == (128, 128)
    assert (cfg.movegen.max_plays, cfg.movegen.frontier2, cfg.movegen.frontier3) == (128, 96, 192)
    assert cfg.selfplay.mode == "afterstate" and cfg.selfplay.ply == 0
    assert cfg.search.num_simulations == 32
    assert cfg.training.learning_rate == 1e-3 and cfg.training.lr_schedule == "cosine"
    assert cfg.buffer.capacity_positions == 300_000
    assert cfg.eval.opponents == ("random", "pubeval")
    assert cfg.local.minutes == 30.0 and cfg.local.checkpoint_dir == "runs/local"


def test_sections_match_config_fields() -> None:
    assert list(SECTIONS) == [f.name for f in dataclasses.fields(Config)]
    for name, cls in SECTIONS.items():
        assert isinstance(getattr(Config(), name), cls)


def test_every_field_is_documented() -> None:
    classes, lines = {}, {}
    for module in ("config.py", "config_deploy.py"):  # the sections live in these two
        source = (REPO / "bgai" / module).read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef):
                classes[node.name], lines[node.name] = node, source.splitlines()
    assert set(classes) >= {cls.__name__ for cls in SECTIONS.values()}
    for cls in [*SECTIONS.values(), Config]:
        names = {f.name for f in dataclasses.fields(cls)}
        for stmt in classes[cls.__name__].body:
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and stmt.target.id in names
            ):
                names.discard(stmt.target.id)
                comment = lines[cls.__name__][stmt.lineno - 2].strip()  # the line above the field
                assert comment.startswith("#") or cls is Config, (
                    f"{cls.__name__}.{stmt.target.id}: no comment"
                )
        assert not names


def test_local_yaml_loads() -> None:
    cfg = load_config(REPO / "configs" / "local.yaml", env={})
    assert cfg.selfplay.mode == "afterstate"
    assert cfg.local.minutes == 30.0


def test_yaml_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
model:
  hidden: [64, 32, 16]
training:
  learning_rate: 3e-4     # YAML 1.1 would read this as a string
  warmup_steps: 10
  grad_clip: 2            # an int is fine for a float
eval:
  opponents: [pubeval]
search:                   # an empty section keeps the defaults
""",
    )
    cfg = load_config(path, env={})
    assert cfg.model.hidden == (64, 32, 16)
    assert cfg.training.learning_rate == 3e-4
    assert cfg.training.warmup_steps == 10
    assert cfg.training.grad_clip == 2.0 and isinstance(cfg.training.grad_clip, float)
    assert cfg.eval.opponents == ("pubeval",)
    assert cfg.search == Config().search
    assert cfg.training.batch_size == 256  # untouched keys keep their defaults


def test_empty_yaml_is_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n"), env={}) == Config()


def test_env_overrides() -> None:
    env = {
        "BGAI_TRAINING__LEARNING_RATE": "3e-4",
        "BGAI_TRAINING__BATCH_SIZE": "512",
        "BGAI_MODEL__HIDDEN": "256, 64",
        "BGAI_EVAL__OPPONENTS": "random",
        "BGAI_LOCAL__CHECKPOINT_DIR": "123",  # str fields take the text verbatim
        "BGAI_SELFPLAY__MODE": "mcts",
        "BGAI_RUN_DIR": "x",  # other BGAI_ variables are not config
        "HOME": "/root",
    }
    cfg = load_config(None, env=env)
    assert cfg.training.learning_rate == 3e-4
    assert cfg.training.batch_size == 512
    assert cfg.model.hidden == (256, 64)
    assert cfg.eval.opponents == ("random",)
    assert cfg.local.checkpoint_dir == "123"
    assert cfg.selfplay.mode == "mcts"
    assert load_config(None, env={"BGAI_MODEL__HIDDEN": "[32, 16]"}).model.hidden == (32, 16)


def test_os_environ_used_only_when_env_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGAI_TRAINING__SEED", "7")
    assert load_config(None).training.seed == 7
    assert load_config(None, env={}).training.seed == 0


def test_overrides() -> None:
    cfg = load_config(
        None,
        env={},
        overrides={
            "training.seed": 5,
            "model.hidden": [8],
            "search.temperature": "0.5",  # strings are read like env values for non-str fields
        },
    )
    assert cfg.training.seed == 5 and cfg.model.hidden == (8,) and cfg.search.temperature == 0.5


def test_precedence(tmp_path: Path) -> None:
    path = write(tmp_path, "training:\n  seed: 1\n  batch_size: 32\n  warmup_steps: 3\n")
    env = {"BGAI_TRAINING__SEED": "2", "BGAI_TRAINING__BATCH_SIZE": "64"}
    cfg = load_config(path, env=env, overrides={"training.seed": 3})
    assert cfg.training.seed == 3  # override > env > file
    assert cfg.training.batch_size == 64  # env > file
    assert cfg.training.warmup_steps == 3  # file > default
    assert cfg.training.publish_every == 100  # default


ERROR_CASES = [
    # (yaml text or None, env, overrides, key expected in the message)
    ("nosuch:\n  x: 1\n", {}, {}, "nosuch"),
    ("nosuch:\n", {}, {}, "nosuch"),
    ("training:\n  learnin_rate: 1.0\n", {}, {}, "training.learnin_rate"),
    ("training:\n  batch_size: true\n", {}, {}, "training.batch_size"),  # bool is not an int
    ("training:\n  batch_size: 2.0\n", {}, {}, "training.batch_size"),
    ("training:\n  learning_rate: fast\n", {}, {}, "training.learning_rate"),
    ("training:\n  learning_rate: .nan\n", {}, {}, "training.learning_rate"),
    ("model:\n  hidden: 128\n", {}, {}, "model.hidden"),
    ("model:\n  hidden: [128, x]\n", {}, {}, "model.hidden"),
    ("model:\n  hidden: []\n", {}, {}, "model.hidden"),
    ("model:\n  hidden: [128, 0]\n", {}, {}, "model.hidden"),
    ("selfplay: 3\n", {}, {}, "selfplay"),
    ("selfplay:\n  mode: alphabeta\n", {}, {}, "selfplay.mode"),
    ("selfplay:\n  mode: no\n", {}, {}, "selfplay.mode"),  # YAML 1.1 bool
    ("selfplay:\n  ply: 2\n", {}, {}, "selfplay.ply"),
    ("training:\n  lr_schedule: linear\n", {}, {}, "training.lr_schedule"),
    ("eval:\n  player: human\n", {}, {}, "eval.player"),
    ("movegen:\n  max_plays: 0\n", {}, {}, "movegen.max_plays"),
    ("search:\n  dirichlet_fraction: 1.5\n", {}, {}, "search.dirichlet_fraction"),
    ("buffer:\n  surprise_fraction: -0.1\n", {}, {}, "buffer.surprise_fraction"),
    ("training:\n  batch_size: -1\n", {}, {}, "training.batch_size"),
    ("training:\n  seed: -1\n", {}, {}, "training.seed"),
    ("buffer:\n  capacity_positions: 100\n", {}, {}, "training.min_buffer_positions"),
    ("training:\n  seed: 1\n  seed: 2\n", {}, {}, "cfg.yaml"),  # duplicate key, refused with the file
    (None, {"BGAI_TRAINING__NOPE": "1"}, {}, "training.nope"),
    (None, {"BGAI_NOPE__SEED": "1"}, {}, "nope.seed"),
    (None, {"BGAI_TRAINING__BATCH_SIZE": "many"}, {}, "training.batch_size"),
    (None, {"BGAI_TRAINING__BATCH_SIZE": "true"}, {}, "training.batch_size"),
    (None, {"BGAI_MODEL__HIDDEN": "128,x"}, {}, "model.hidden"),
    (None, {"BGAI_TRAINING__LEARNING_RATE": "[1"}, {}, "training.learning_rate"),
    (None, {"BGAI_TRAINING_SEED": "1"}, {}, "BGAI_TRAINING_SEED"),  # one underscore
    (None, {}, {"training.nope": 1}, "training.nope"),
    (None, {}, {"nope": 1}, "nope"),
    (None, {}, {"training.batch_size": True}, "training.batch_size"),
    (None, {}, {"training.batch_size": 1.5}, "training.batch_size"),
    (None, {}, {"eval.opponents": [1]}, "eval.opponents"),
    (None, {}, {"local.checkpoint_dir": 5}, "local.checkpoint_dir"),
]


@pytest.mark.parametrize(("text", "env", "overrides", "key"), ERROR_CASES)
def test_errors_name_the_key(
    tmp_path: Path, text: str | None, env: dict[str, str], overrides: dict[str, object], key: str
) -> None:
    path = write(tmp_path, text) if text is not None else None
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env, overrides=overrides)
    assert key in str(info.value)
    assert info.value.key.startswith(key) or key in info.value.key
    assert isinstance(info.value, BgaiError)


def test_error_says_where_the_value_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env BGAI_TRAINING__BATCH_SIZE"):
        load_config(None, env={"BGAI_TRAINING__BATCH_SIZE": "0"})
    path = write(tmp_path, "training:\n  batch_size: 0\n")
    with pytest.raises(ConfigError, match="cfg.yaml"):
        load_config(path, env={})


@pytest.mark.parametrize("text", ["training: [1, 2\n", "- a\n- b\n", "just a string\n", "\tx: 1\n"])
def test_bad_files(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == str(path)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, env={})
    assert str(missing) in str(info.value)


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"training\.batch_size"):
        TrainingConfig(batch_size=0)
    with pytest.raises(ConfigError, match=r"model\.hidden"):
        ModelConfig(hidden=(1, True))
    assert TrainingConfig(learning_rate=1).learning_rate == 1.0
    assert ModelConfig(hidden=[4, 4]).hidden == (4, 4)  # type: ignore[arg-type]


def test_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.training.batch_size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model = ModelConfig()  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        cfg.training.new_field = 1  # type: ignore[attr-defined]  # slots: no new attributes


def test_dict_round_trip_and_json() -> None:
    cfg = load_config(None, env={}, overrides={"model.hidden": [16], "training.seed": 9})
    data = config_to_dict(cfg)
    assert json.loads(json.dumps(data)) == data
    assert data["model"]["hidden"] == [16]
    assert config_from_dict(data) == cfg
    with pytest.raises(ConfigError, match=r"training\.nope"):
        config_from_dict({"training": {"nope": 1}})


def test_hashes() -> None:
    base = Config()
    h, m = config_hash(base), model_hash(base)
    assert len(h) == 12 and len(m) == 12 and int(h, 16) >= 0
    assert config_hash(load_config(None, env={})) == h  # stable across instances
    assert config_hash(config_from_dict(config_to_dict(base))) == h
    # int vs float spelling of the same value does not change the hash
    assert config_hash(load_config(None, env={}, overrides={"training.grad_clip": 1})) == h

    other = load_config(None, env={}, overrides={"training.learning_rate": 2e-3})
    assert config_hash(other) != h and model_hash(other) == m
    wider = load_config(None, env={}, overrides={"model.hidden": [256, 128]})
    assert config_hash(wider) != h and model_hash(wider) != m


def test_hash_is_pinned() -> None:
    # Weights and checkpoints carry these: a change to defaults or canonicalisation must be deliberate.
    assert model_hash(Config()) == model_hash(Config(model=ModelConfig(hidden=(128, 128))))
    assert model_hash(Config()) == PINNED_MODEL_HASH


PINNED_MODEL_HASH = "cc64e486c60d"


def test_config_error_copies() -> None:
    # copy goes through __reduce__, as carrying the error across processes would.
    err = copy.deepcopy(ConfigError("training.seed", "bad"))
    assert (err.key, err.message) == ("training.seed", "bad")


def test_fleet_sections() -> None:
    cfg = load_config(
        None,
        env={
            "BGAI_REDIS__PASSWORD": "s3cret #1",
            "BGAI_REDIS__PORT": "6390",
            "BGAI_HEAD__HEARTBEAT_TTL_S": "30",
        },
    )
    assert cfg.redis.password == "s3cret #1" and cfg.redis.port == 6390 and cfg.head.heartbeat_ttl_s == 30.0
    for key, value, words in [
        ("redis.port", "70000", "TCP port"),
        ("redis.prefix", "a b", "must match"),
        ("head.heartbeat_every_s", "90", "heartbeat_ttl_s"),
        ("redis.hots", "x", "did you mean redis.host"),
        ("eval.slice_games", "0", "> 0"),
    ]:
        with pytest.raises(ConfigError, match=words) as err:
            load_config(None, env={}, overrides={key: value})
        assert err.value.key == key


def test_deployment_sections_do_not_change_the_run_fingerprint() -> None:
    base = config_hash(Config())
    moved = load_config(
        None,
        env={},
        overrides={"redis.host": "10.0.0.5", "redis.password": "pw", "head.heartbeat_every_s": 2},
    )
    assert config_hash(moved) == base
    assert config_hash(load_config(None, env={}, overrides={"buffer.capacity_positions": 10**6})) != base


def test_distributed_yaml_loads() -> None:
    cfg = load_config(REPO / "configs" / "distributed.yaml", env={})
    assert cfg.redis.password == "" and cfg.redis.host == "127.0.0.1"  # nothing secret committed


# --- hostile configs: bombs, absurd sizes, secrets ----------------------------------------------


def alias_bomb(depth: int) -> str:
    """The review's bomb: each level a list of ten aliases of the one before (10**depth leaves
    from a file of a few hundred bytes), under a key whose value must be a mapping."""
    levels = ['&a0 ["xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxxxxxxx"]']
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, depth + 1)]
    return f"training: [{', '.join(levels)}]\n"


def test_a_yaml_alias_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bgai.cli.main import cli

    bomb = write(tmp_path, alias_bomb(8))
    assert len(bomb.read_bytes()) < 1000
    tracemalloc.start()
    try:
        out = CliRunner().invoke(cli, ["check-config", "--config", str(bomb)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.exit_code == 2 and "alias" in out.output, out.output
    assert peak < 32 << 20, f"{peak >> 20} MiB"
    with pytest.raises(ConfigError, match="alias"):  # env and --set values are YAML too
        load_config(None, env={"BGAI_MODEL__HIDDEN": "[&w 64, *w]"})


def test_a_config_file_over_a_mebibyte_is_not_read(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="larger than"):
        load_config(write(tmp_path, "# padding\n" * 200_000), env={})


def test_an_error_never_builds_a_full_repr() -> None:
    from bgai.config_parse import describe

    shared: object = ["xxxxxxxxxx"] * 10
    for _ in range(6):  # 10**7 leaves by reference: a full repr is ~140 MB
        shared = [shared] * 10
    tracemalloc.start()
    try:
        text = describe(shared)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert text.startswith("list [[[") and len(text) <= 80 and peak < 1 << 20


# (dotted key, a value past its ceiling): each refused, naming the key
ABSURD = [
    ("buffer.capacity_positions", 10**23),
    ("model.hidden", [10**9, 10**9]),
    ("model.hidden", [64] * 100),
    ("selfplay.spool_episodes", 10**11),
    ("head.heartbeat_ttl_s", 1e308),
    ("head.trainer_lock_ttl_s", 2 * 86_400.0),
    ("selfplay.batch_size", 10**9),
    ("training.batch_size", 10**9),
    ("movegen.max_plays", 10**6),
    ("selfplay.max_turns", 10**6),
    ("search.num_simulations", 10**9),
    ("eval.games", 10**12),
    ("redis.socket_timeout_s", 1e9),
    ("jax.cache_max_mb", 10**12),
]


@pytest.mark.parametrize(("key", "value"), ABSURD)
def test_sizes_counts_and_durations_have_ceilings(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match="must be <=") as err:
        load_config(None, env={}, overrides={key: value})
    assert err.value.key.startswith(key)


def test_every_number_in_the_config_has_a_ceiling() -> None:
    from bgai.config_bounds import BOUNDED_BY_SECTION, CEILINGS
    from bgai.config_parse import field_types

    for section, cls in SECTIONS.items():
        for name, hint in field_types(cls).items():
            key = f"{section}.{name}"
            if hint in (int, float) or hint == tuple[int, ...]:
                assert key in CEILINGS or key in BOUNDED_BY_SECTION, f"{key}: add a ceiling in config_bounds"


@pytest.mark.parametrize("key", ["training.checkpoint_dir", "head.targets_file", "local.checkpoint_dir"])
def test_an_empty_path_is_refused(key: str) -> None:
    for empty in ("", "  "):
        with pytest.raises(ConfigError, match="non-empty") as err:
            load_config(None, env={}, overrides={key: empty})
        assert err.value.key == key


def test_a_slice_is_at_most_the_games_of_a_version() -> None:
    with pytest.raises(ConfigError, match="eval.games") as err:
        load_config(None, env={}, overrides={"eval.games": "10", "eval.slice_games": "50"})
    assert err.value.key == "eval.slice_games"


def test_a_password_is_never_echoed(tmp_path: Path) -> None:
    secret = "918273645546372819"
    cases = [
        lambda: load_config(write(tmp_path, f"redis:\n  password: {secret}\n"), env={}),
        lambda: load_config(None, env={}, overrides={"redis.password": int(secret)}),
        lambda: load_config(write(tmp_path, f'redis:\n  password: "{secret}\n'), env={}),  # malformed
        lambda: load_config(write(tmp_path, f"redis:\n  password: [{secret}]\n"), env={}),
    ]
    for case in cases:
        with pytest.raises(ConfigError) as err:
            case()
        assert secret not in str(err.value), str(err.value)


def test_a_password_file_gives_the_password_and_never_shows_it(tmp_path: Path) -> None:
    """`redis.password_file` (how supervisord gives each role its own password without putting
    it in an environment): read at load, trailing newline dropped; both it and a password, a
    missing, empty, binary or oversized file are refused, and no message shows the contents."""
    from bgai.config_parse import secret_keys

    secret = "s3cret-9f8e7d6c5b4a"
    (tmp_path / "pw").write_text(secret + "\n")
    cfg = load_config(env={"BGAI_REDIS__PASSWORD_FILE": str(tmp_path / "pw")})
    assert cfg.redis.password == secret
    with pytest.raises(ConfigError, match=r"redis\.password: give it or redis\.password_file, not both"):
        load_config(
            env={"BGAI_REDIS__PASSWORD_FILE": str(tmp_path / "pw")}, overrides={"redis.password": "x"}
        )
    bad = {
        "missing": None,
        "empty": b"\n",
        "binary": b"\xff\xfe" + secret.encode(),
        "two lines": f"{secret}\nmore\n".encode(),
        "huge": secret.encode() * 1000,
    }
    for name, content in bad.items():
        path = tmp_path / name.replace(" ", "_")
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ConfigError, match=r"redis\.password_file") as err:
            load_config(env={}, overrides={"redis.password_file": str(path)})
        assert secret not in str(err.value) and str(path) in str(err.value), name
    # what may leave the host has every secret masked, and says so only where one is set
    assert {"redis.password", "mlflow.password"} <= set(secret_keys(SECTIONS))
    masked = config_to_dict(cfg, masked=True)
    assert masked["redis"]["password"] == "***" and masked["mlflow"]["password"] == ""
    assert secret not in json.dumps(masked) and secret in json.dumps(config_to_dict(cfg))
