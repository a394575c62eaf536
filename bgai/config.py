"""Typed, frozen, closed configuration.

One frozen dataclass per section; `Config` holds them all. The defaults form a small local CPU run.
`load_config` resolves, later layers winning:

    code defaults  ->  YAML file  ->  env BGAI_<SECTION>__<KEY>  ->  overrides {"section.key": value}

- YAML: a mapping of sections to mappings of keys. Values must have the field's type (a bool is not
  an int; an int is accepted for a float; a list for a tuple). `1e-3` reads as a float (YAML 1.2),
  duplicate keys are refused.
- Env: `BGAI_TRAINING__LEARNING_RATE=3e-4`. The text is read as a YAML scalar, except that a str
  field takes the text verbatim; a tuple field takes a YAML list (`[128, 64]`) or comma separated
  items (`128,64`). Other `BGAI_*` variables without `__` are not config and are ignored, unless they
  look like a config key written with one underscore (`BGAI_TRAINING_SEED`), which is refused.
  `BGAI_REDIS_URL` (as rq's and MLflow's URLs go) is `redis.url`: `redis://host:port/db`.
- Overrides (the CLI's `--set`): dotted keys; a value is either already typed or, for a non-str
  field, a string read like an env value.
- A secret's `*_file` (`redis.password_file`) names a file holding it; giving both is refused.

Anything unknown, mistyped or out of range raises `ConfigError` naming the dotted key (or the
file) and where the value came from. Direct construction (`TrainingConfig(batch_size=0)`) is
validated the same way. Nothing happens at import; the environment is read only by `load_config`.

`config_hash` fingerprints the whole resolved config; `model_hash` only what fixes the weights'
shapes, so weights can be checked against the model that will load them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

from bgai.config_deploy import HeadConfig, JaxConfig, LocalConfig, MlflowConfig, RedisConfig
from bgai.config_parse import coerce, describe, field_types, parse_text, read_secrets, read_yaml, secret_keys
from bgai.config_section import _Section
from bgai.errors import ConfigError
from bgai.opponent_names import parse_opponent

ENV_PREFIX = "BGAI_"
# Env names of config keys besides BGAI_<SECTION>__<KEY>: the Redis URL, as rq and MLflow read theirs.
ENV_ALIASES = {"BGAI_REDIS_URL": "redis.url"}

# ---------------------------------------------------------------------------------------------
# Sections


@dataclass(frozen=True, slots=True)
class ModelConfig(_Section):
    """The value/policy network. Its fields fix the weights' shapes (see `model_hash`)."""

    SECTION: ClassVar[str] = "model"
    # Widths of the hidden layers of the MLP trunk, input side first.
    hidden: tuple[int, ...] = (128, 128)
    # What the net sees (`bgai/core/encoding.py`): "raw" (Tesauro's 196 units per point) or
    # "extended" (those and hand-crafted features of both sides: pips, hitting shots, primes...)
    # or "escapes" (extended, and back-checker escapes and containment of both sides).
    inputs: str = "raw"
    # Outcome heads: "one" for every position, "by_class" (one for contact positions, one for
    # races, on the same trunk) or "race_net" (races valued by a net of their own, `race_hidden`
    # wide, as gnubg's separate race net). Bear-offs take `values.bearoff` either way.
    value_heads: str = "one"
    # Widths of the race net's hidden layers (value_heads: race_net only), input side first.
    race_hidden: tuple[int, ...] = ()
    # Nets of this shape played as one: the mean of their outcome probabilities. 1: one net (the
    # only kind that trains); K > 1: a checkpoint of K nets stacked by `bgai ensemble-checkpoints`
    # from a run's checkpoints, for evaluation and play (`--set model.ensemble=K` to load it).
    ensemble: int = 1

    def _validate(self) -> None:
        self._need("hidden", len(self.hidden) > 0, "must list at least one layer")
        self._need("hidden", all(h > 0 for h in self.hidden), "every width must be > 0")
        self._choice("inputs", tuple(INPUT_VERSIONS))
        self._choice("value_heads", ("one", "by_class", "race_net"))
        race_net = self.value_heads == "race_net"
        self._need(
            "race_hidden", bool(self.race_hidden) == race_net, "is set with value_heads: race_net only"
        )
        self._need("race_hidden", all(h > 0 for h in self.race_hidden), "every width must be > 0")
        self._need("ensemble", self.ensemble >= 1, "must be >= 1 (1: one net)")


# The version of each input scheme's features (`bgai.core.features.VERSION` for "extended",
# `ESCAPE_VERSION` for "escapes"; a test checks they agree): part of the model hash, so weights
# never load into other features.
INPUT_VERSIONS = {"raw": 1, "extended": 1, "escapes": 1}


@dataclass(frozen=True, slots=True)
class MoveGenConfig(_Section):
    """Static capacities of the legal-move generator (`bgai.core.rules.MoveGenConfig`).

    They fix compiled shapes; a position with more distinct plays than fit sets `overflow`.
    """

    SECTION: ClassVar[str] = "movegen"
    # Distinct whole plays kept per decision.
    max_plays: int = 128
    # Distinct partial positions kept after 2 steps of a double.
    frontier2: int = 96
    # Distinct partial positions kept after 3 steps of a double.
    frontier3: int = 192
    # Which generator computes the plays (the same plays, slot for slot): "jax", the XLA cascade,
    # on any device; "native", numba's sequential generator on the host, ~3x faster on a CPU
    # (`bgai.core.movegen_native`); "auto", native where JAX computes on the CPU and numba is
    # installed, jax elsewhere. A host's choice: not part of the config hash.
    backend: str = "auto"

    def _validate(self) -> None:
        self._positive("max_plays", "frontier2", "frontier3")
        self._choice("backend", ("auto", "jax", "native"))


@dataclass(frozen=True, slots=True)
class SelfPlayConfig(_Section):
    """How game workers play against themselves."""

    SECTION: ClassVar[str] = "selfplay"
    # `afterstate`: score every legal play by the value of its afterstate (fast, CPU default);
    # `mcts`: stochastic MCTS with chance nodes (see the `search` section).
    mode: str = "afterstate"
    # Games played in parallel (one vmapped batch).
    batch_size: int = 128
    # A game still running after this many turns is abandoned (not stored).
    max_turns: int = 512
    # Afterstate mode exploration: softmax temperature over play equities (0 = greedy).
    temperature: float = 0.1
    # Turns of a game played with exploration; later turns play greedily.
    explore_turns: int = 512
    # Softmax temperature turning afterstate equities into the stored policy target.
    policy_temperature: float = 0.2
    # Afterstate lookahead: 0 = value of the afterstate (the only one implemented so far).
    ply: int = 0
    # Decisions each game slot plays per compiled call (finished games restart in their slot).
    chunk_turns: int = 64
    # Afterstate mode: network rows per game for legal afterstates (packed; a batch with more
    # legal plays than batch_size * eval_slots falls back to evaluating every slot).
    eval_slots: int = 32
    # Game workers: finished episodes kept locally while Redis is unreachable (pushed on
    # reconnect); beyond this the oldest are dropped, counted and reported.
    spool_episodes: int = 2000
    # Game workers: where that spool is also kept on disk (one directory per worker below it),
    # so the episodes Redis has not taken survive a restart of the worker (SIGTERM, kill -9).
    spool_dir: str = "runs/fleet/spool"

    def _validate(self) -> None:
        self._choice("mode", ("afterstate", "mcts"))
        self._positive("batch_size", "max_turns", "policy_temperature")
        self._non_negative("temperature", "explore_turns")
        self._choice("ply", (0,))
        self._positive("eval_slots", "chunk_turns", "spool_episodes")


@dataclass(frozen=True, slots=True)
class SearchConfig(_Section):
    """Stochastic MCTS (selfplay.mode = mcts, eval.player = search)."""

    SECTION: ClassVar[str] = "search"
    # Simulations per decision; exactly this many are run.
    num_simulations: int = 32
    # Concentration of the Dirichlet noise mixed into the root priors.
    dirichlet_alpha: float = 0.3
    # Weight of that noise in the root priors (0 = no noise).
    dirichlet_fraction: float = 0.25
    # Temperature over root visit counts when choosing a move (0 = most visited).
    temperature: float = 1.0
    # Turns played at `temperature`; later turns choose the most visited move.
    temperature_turns: int = 20

    def _validate(self) -> None:
        self._positive("num_simulations", "dirichlet_alpha")
        self._fraction("dirichlet_fraction")
        self._non_negative("temperature", "temperature_turns")


@dataclass(frozen=True, slots=True)
class TrainingConfig(_Section):
    """The training worker: optimiser, losses, sampling and publishing."""

    SECTION: ClassVar[str] = "training"
    # Positions per optimiser step.
    batch_size: int = 256
    # Peak learning rate (AdamW).
    learning_rate: float = 1e-3
    # `constant` or `cosine` (decay to 5% of the rate over `decay_steps` after warm-up).
    lr_schedule: str = "cosine"
    # Linear warm-up steps from 0 to `learning_rate`.
    warmup_steps: int = 200
    # Length of the cosine decay in steps, unless the run's length is known (below).
    decay_steps: int = 200_000
    # With the run's length known (train-local's --minutes, the fleet's `run_minutes`), the cosine
    # decay ends after this share of it: its length in steps is fitted from the measured train
    # steps a second (bgai/train/decay_fit.py). 0 = always `decay_steps`.
    decay_share: float = 0.85
    # The fleet's planned training minutes (the trainer's `elapsed_s`, resumes included), for
    # `decay_share`; `scripts/fleet-local --minutes N` sets N. 0 = open-ended: `decay_steps`.
    run_minutes: float = 0.0
    # AdamW decoupled weight decay.
    weight_decay: float = 1e-4
    # Global gradient-norm clip (0 = no clipping).
    grad_clip: float = 1.0
    # Weight of the value (outcome) loss.
    value_weight: float = 1.0
    # Weight of the policy loss.
    policy_weight: float = 1.0
    # Value-head targets: `td` (TD(lambda) returns over each episode, from the values of the
    # weights that played it) or `one_ply` (the exact 1-ply expectation of each position: the
    # average over the 21 rolls of the best play's value; ~20x the cost of a self-play decision).
    value_target: str = "td"
    # With `value_target: one_ply`: the share of positions (drawn by their dice, not their boards)
    # labelled by the exact 1-ply expectation; the others keep their TD(lambda) return. 1: all.
    one_ply_share: float = 1.0
    # lambda of the TD(lambda) returns: 1 = the final outcome (Monte-Carlo), 0 = TD(0). Measured
    # (docs/results.md, 15-20k games): 0.9 with 4 samples per position beats 1.0, 0.7 and 0.
    td_lambda: float = 0.9
    # Target replay ratio: positions sampled for training per position generated.
    samples_per_position: float = 1.0
    # Training waits until the buffer holds this many positions.
    min_buffer_positions: int = 5_000
    # Publish the weights every this many steps.
    publish_every: int = 100
    # Write a checkpoint (weights + optimiser state) every this many steps.
    checkpoint_every: int = 1_000
    # Checkpoints kept on disk; older ones are deleted.
    keep_checkpoints: int = 3
    # Seed of the initial weights and of sampling (a uint32).
    seed: int = 0
    # Fleet: where the training worker writes its checkpoints.
    checkpoint_dir: str = "runs/fleet/checkpoints"
    # Fleet: positions fetched from the replay buffer per round trip (split into batches).
    sample_block: int = 4096

    def _validate(self) -> None:
        self._positive("batch_size", "learning_rate", "decay_steps", "samples_per_position")
        self._positive("publish_every", "checkpoint_every", "keep_checkpoints")
        self._choice("lr_schedule", ("constant", "cosine"))
        self._choice("value_target", ("td", "one_ply"))
        self._fraction("td_lambda", "decay_share", "one_ply_share")
        only = self.value_target == "one_ply" or self.one_ply_share == 1.0
        self._need("one_ply_share", only, "takes effect only with training.value_target: one_ply")
        self._non_negative("run_minutes")
        self._non_negative("warmup_steps", "weight_decay", "grad_clip", "value_weight", "policy_weight")
        self._non_negative("min_buffer_positions")
        self._positive("sample_block")
        self._need("seed", 0 <= self.seed < 2**32, "must be in [0, 2**32)")


@dataclass(frozen=True, slots=True)
class BufferConfig(_Section):
    """The replay buffer of episodes."""

    SECTION: ClassVar[str] = "buffer"
    # Positions kept; the oldest episodes are evicted beyond this.
    capacity_positions: int = 300_000
    # Share of each training batch drawn by surprise (value error) instead of uniformly.
    surprise_fraction: float = 0.0

    def _validate(self) -> None:
        self._positive("capacity_positions")
        self._fraction("surprise_fraction")


@dataclass(frozen=True, slots=True)
class EvalConfig(_Section):
    """The eval worker: matches of the current model against fixed opponents."""

    SECTION: ClassVar[str] = "eval"
    # Games per opponent per evaluation.
    games: int = 200
    # Opponents: random, pubeval, gnubg_0ply / gnubg_1ply / gnubg_2ply (GNU Backgammon), and
    # past_K (our own model K versions back: the newest evaluated version <= N-K).
    opponents: tuple[str, ...] = ("random", "pubeval")
    # How the model plays: `greedy` (0-ply afterstates) or `search` (MCTS, `search` section).
    player: str = "greedy"
    # Lookahead of the greedy player: 0 = the best afterstate by value; 1 = the best of the
    # `one_ply_candidates` top 0-ply plays by an exact average over the opponent's 21 rolls;
    # 2 = the best of the `finalists` top 1-ply plays by gnubg's 2-ply (the opponent's 21
    # rolls, its best 0-ply reply to each valued at 1-ply).
    plies: int = 0
    # 1- and 2-ply: plays (ranked by 0-ply) that get the 1-ply lookahead.
    one_ply_candidates: int = 8
    # 2-ply: plays (ranked by 1-ply) that get the 2-ply lookahead.
    finalists: int = 2
    # Fleet: evaluate a new version once it is this many versions past the last evaluated one.
    every_versions: int = 1
    # Fleet: games per claimed slice (eval workers split a version's games into slices). Games
    # come in pairs with the same dice, so this and `games` are even.
    slice_games: int = 50
    # Fleet: decisions of the decision set (`bgai bench strength`) each slice scores with the
    # version's greedy 0-ply player, a different part of the set per slice: a version's ER is
    # over (games / slice_games) x this many decisions, the same ones for every version (0: none).
    er_decisions: int = 200
    # Fleet: the largest share of wall-clock time an eval worker spends evaluating (0 < x <= 1).
    # After a slice that took t seconds it rests t * (1 - x) / x before claiming the next, so on a
    # host that also plays and trains, evaluation takes at most this share of one core and the
    # rest goes to self-play and training; it evaluates fewer versions, spaced further apart.
    busy_share: float = 1.0
    # GNU Backgammon opponents: `external` (Debian's gnubg over its socket engine) or `nn`
    # (the gnubg-nn package in process).
    gnubg_backend: str = "external"
    # Debian's gnubg binary (for gnubg_backend: external).
    gnubg_path: str = "/usr/games/gnubg"

    def _validate(self) -> None:
        self._positive("games", "every_versions", "slice_games")
        self._need("games", self.games % 2 == 0, "must be even (games come in pairs)")
        self._need("slice_games", self.slice_games % 2 == 0, "must be even (games come in pairs)")
        self._need("slice_games", self.slice_games <= self.games, "must be <= eval.games")
        for name in self.opponents:
            try:
                parse_opponent(name)
            except ValueError as exc:
                self._need("opponents", False, str(exc))
        self._choice("player", ("greedy", "search"))
        self._choice("plies", (0, 1, 2))
        self._positive("one_ply_candidates", "finalists")
        self._non_negative("er_decisions")
        self._need("busy_share", 0 < self.busy_share <= 1, "must be in (0, 1]")
        self._choice("gnubg_backend", ("external", "nn"))


@dataclass(frozen=True, slots=True)
class ValuesConfig(_Section):
    """Where positions' values come from besides the network (in play, search and targets)."""

    SECTION: ClassVar[str] = "values"
    # Exact values of bear-off races (both sides all home or off) from bgai's own one-sided
    # database (`bgai/core/bearoff.py`, kept in `jax.bearoff_dir`) instead of the network's.
    bearoff: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    """The whole resolved configuration."""

    model: ModelConfig = field(default_factory=ModelConfig)
    movegen: MoveGenConfig = field(default_factory=MoveGenConfig)
    selfplay: SelfPlayConfig = field(default_factory=SelfPlayConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    buffer: BufferConfig = field(default_factory=BufferConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    values: ValuesConfig = field(default_factory=ValuesConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)
    jax: JaxConfig = field(default_factory=JaxConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                got = type(getattr(self, name)).__name__
                raise ConfigError(name, f"expected a {cls.__name__}, got {got}")
        if self.training.min_buffer_positions > self.buffer.capacity_positions:
            raise ConfigError(
                "training.min_buffer_positions",
                f"must be <= buffer.capacity_positions ({self.buffer.capacity_positions}), "
                f"got {self.training.min_buffer_positions}",
            )


SECTIONS: dict[str, type[_Section]] = {
    cls.SECTION: cls
    for cls in (
        ModelConfig,
        MoveGenConfig,
        SelfPlayConfig,
        SearchConfig,
        TrainingConfig,
        BufferConfig,
        EvalConfig,
        ValuesConfig,
        LocalConfig,
        RedisConfig,
        HeadConfig,
        MlflowConfig,
        JaxConfig,
    )
}

# Where and how processes run, not what is learned: left out of `config_hash`, so workers that
# reach the same Redis by different addresses agree on the run's fingerprint.
DEPLOYMENT_SECTIONS = ("local", "redis", "head", "mlflow", "jax")

# ---------------------------------------------------------------------------------------------
# Loading


class _Layers:
    """Raw values merged layer by layer, each checked on arrival and remembered with its source."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, object]] = {}
        self.sources: dict[str, str] = {}

    def set(self, dotted: str, value: object, source: str, *, text: bool = False) -> None:
        section, dot, name = dotted.partition(".")
        if not dot or section not in SECTIONS:
            raise ConfigError(dotted, f"unknown section {section!r} ({source}); known: {', '.join(SECTIONS)}")
        hints = field_types(SECTIONS[section])
        if name not in hints:
            close = difflib.get_close_matches(name, hints, n=1)
            hint = f"; did you mean {section}.{close[0]}?" if close else f"; known: {', '.join(hints)}"
            raise ConfigError(dotted, f"unknown key ({source}){hint}")
        try:
            if text and isinstance(value, str):
                value = parse_text(dotted, value, hints[name])
            value = coerce(dotted, value, hints[name])
        except ConfigError as err:
            raise ConfigError(err.key, f"{err.message} ({source})") from None
        self.values.setdefault(section, {})[name] = value
        self.sources[dotted] = source

    def add_mapping(self, data: Mapping[Any, Any], source: str) -> None:
        for section, keys in data.items():
            if section not in SECTIONS:
                known = ", ".join(SECTIONS)
                raise ConfigError(str(section), f"unknown section ({source}); known: {known}")
            if keys is None:  # `model:` with every key commented out
                continue
            if not isinstance(keys, Mapping):
                got = describe(keys)
                raise ConfigError(str(section), f"expected a mapping of keys ({source}), got {got}")
            for name, value in keys.items():
                self.set(f"{section}.{name}", value, source)

    def add_env(self, env: Mapping[str, str]) -> None:
        for var in sorted(env):
            if not var.startswith(ENV_PREFIX):
                continue
            rest = var[len(ENV_PREFIX) :]
            if var in ENV_ALIASES:
                section, _, name = ENV_ALIASES[var].partition(".")
                if f"{ENV_PREFIX}{section.upper()}__{name.upper()}" in env:
                    raise ConfigError(
                        var, f"give it or {ENV_PREFIX}{section.upper()}__{name.upper()}, not both"
                    )
                self.set(ENV_ALIASES[var], env[var], f"env {var}", text=True)
            elif "__" in rest:
                section, _, name = rest.partition("__")
                self.set(f"{section.lower()}.{name.lower()}", env[var], f"env {var}", text=True)
            elif any(rest.startswith(s.upper() + "_") for s in SECTIONS):
                raise ConfigError(var, "write config variables as BGAI_<SECTION>__<KEY> (two underscores)")

    def build(self) -> Config:
        read_secrets(self.values, self.sources, secret_keys(SECTIONS))
        try:
            sections = {name: cls(**self.values.get(name, {})) for name, cls in SECTIONS.items()}
            return Config(**cast(Any, sections))
        except ConfigError as err:
            source = self.sources.get(err.key.split("[")[0])
            raise ConfigError(err.key, f"{err.message} ({source})" if source else err.message) from None


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Resolve defaults -> YAML `path` -> `env` (os.environ when None) -> `overrides`."""
    layers = _Layers()
    if path is not None:
        layers.add_mapping(read_yaml(Path(path)), f"file {path}")
    layers.add_env(os.environ if env is None else env)
    for dotted, value in (overrides or {}).items():
        layers.set(dotted, value, "override", text=True)
    return layers.build()


def config_from_dict(data: Mapping[str, Any], source: str = "dict") -> Config:
    """The config a `config_to_dict` result describes (missing keys take defaults); strict types."""
    layers = _Layers()
    layers.add_mapping(data, source)
    return layers.build()


def config_to_dict(cfg: Config, masked: bool = False) -> dict[str, dict[str, Any]]:
    """Plain JSON-able `{section: {key: value}}` (tuples become lists); `masked`: every secret
    that is set reads `***` (what may leave the host: MLflow params and artifacts)."""
    out = {
        name: {
            key: list(value) if isinstance(value, tuple) else value
            for key in field_types(type(section))
            for value in (getattr(section, key),)
        }
        for name in SECTIONS
        for section in (getattr(cfg, name),)
    }
    for dotted in secret_keys(SECTIONS) if masked else ():
        section, _, key = dotted.partition(".")
        out[section][key] = "***" if out[section][key] else ""
    return out


def _digest(data: object) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def config_hash(cfg: Config) -> str:
    """12 hex chars of sha256 over the canonical JSON of the config's learning sections."""
    data = config_to_dict(cfg)
    del data["movegen"]["backend"]  # how a host computes the plays, never which plays
    return _digest({k: v for k, v in data.items() if k not in DEPLOYMENT_SECTIONS})


def model_hash(cfg: Config) -> str:
    """12 hex chars of sha256 over only what fixes the weights' shapes (the `model` section)."""
    model = config_to_dict(cfg)["model"]
    # fields added later are left out at their defaults: weights made before keep their hash
    for name, default in (("inputs", "raw"), ("value_heads", "one"), ("race_hidden", []), ("ensemble", 1)):
        if model[name] == default:
            del model[name]
    if "inputs" in model:
        model["inputs_version"] = INPUT_VERSIONS[model["inputs"]]
    return _digest({"model": model})
