"""The one error hierarchy of bgai.

Every error bgai raises on purpose derives from `BgaiError`, so a role loop can tell a refused
input (exit non-zero, don't retry) from a bug or a lost connection. Anything else is a bug.

    BgaiError
     ├─ ConfigError        a configuration value is unknown, mistyped or out of range
     ├─ CorruptDataError   bytes read back (weights, episodes, checkpoints) fail their checks
     │   └─ NonFiniteWeightsError  weights holding a NaN or an infinity (a diverged network)
     └─ IncompatibleError  well-formed data made for another config/format (e.g. other model shapes)
"""

from __future__ import annotations


class BgaiError(Exception):
    """Root of every error bgai raises deliberately."""


class ConfigError(BgaiError):
    """A refused configuration; `key` names what was wrong.

    `key` is a dotted config key (`training.learning_rate`, `model.hidden[1]`) or, for errors
    about a whole file, the file's path. `str(err)` is `"<key>: <message>"`.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message

    def __reduce__(self) -> tuple[type[ConfigError], tuple[str, str]]:
        # Keep (key, message) when the error crosses a process boundary (e.g. multiprocessing).
        return (type(self), (self.key, self.message))


class CorruptDataError(BgaiError):
    """Stored bytes failed their own checks (bad header, checksum, truncated or undecodable)."""


class NonFiniteWeightsError(CorruptDataError):
    """Weights with a NaN or an infinity: never encoded, published, checkpointed or taken."""


class IncompatibleError(BgaiError):
    """Data is intact but belongs to another format version, config hash or model shape."""
