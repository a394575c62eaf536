"""The base of every config section (`bgai.config`): its fields normalised and type-checked at
construction, then the section's own range and enum checks, each error naming the dotted key."""

from __future__ import annotations

from typing import ClassVar

from bgai.config_parse import coerce, field_types
from bgai.errors import ConfigError


class _Section:
    """Base of every section: normalises and type-checks fields, then runs `_validate`."""

    __slots__ = ()
    SECTION: ClassVar[str]  # the section's name in YAML, env and dotted keys

    def __post_init__(self) -> None:
        for name, hint in field_types(type(self)).items():
            value = coerce(f"{self.SECTION}.{name}", getattr(self, name), hint)
            object.__setattr__(self, name, value)  # frozen: normalise int->float, list->tuple
        self._normalise()
        self._validate()

    def _normalise(self) -> None:
        """Fields written another way (`redis.url`) read into the others, before `_validate`."""

    def _validate(self) -> None:
        """Range and enum checks; raise ConfigError through the helpers below."""

    def _need(self, name: str, ok: bool, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{self.SECTION}.{name}", f"{rule}, got {getattr(self, name)!r}")

    def _positive(self, *names: str) -> None:
        for name in names:
            self._need(name, getattr(self, name) > 0, "must be > 0")

    def _non_negative(self, *names: str) -> None:
        for name in names:
            self._need(name, getattr(self, name) >= 0, "must be >= 0")

    def _fraction(self, *names: str) -> None:
        for name in names:
            self._need(name, 0.0 <= getattr(self, name) <= 1.0, "must be in [0, 1]")

    def _choice(self, name: str, choices: tuple[object, ...]) -> None:
        self._need(name, getattr(self, name) in choices, f"must be one of {', '.join(map(str, choices))}")
