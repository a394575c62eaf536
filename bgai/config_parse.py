"""Parsing helpers of `bgai.config`: field types, strict coercion, the YAML loader, env text.

Kept apart from the section definitions so each module stays small; nothing here knows a section.
"""

from __future__ import annotations

import dataclasses
import math
import re
import reprlib
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, cast, get_args, get_origin, get_type_hints

import yaml

from bgai.config_bounds import check_value, is_secret
from bgai.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Types


_FIELD_TYPES: dict[type, dict[str, Any]] = {}  # filled lazily: resolving hints at import is wasted work


def field_types(cls: type) -> dict[str, Any]:
    """{field name: type} of a section dataclass, in declaration order."""
    if cls not in _FIELD_TYPES:
        hints = get_type_hints(cls)
        _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cast(Any, cls))}
    return _FIELD_TYPES[cls]


# a bounded repr: never more than a few items per level and a few levels, whatever the value
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 2, 40, 40
_REPR.maxtuple = _REPR.maxlist = _REPR.maxdict = _REPR.maxset = 4


def describe(value: object, secret: bool = False) -> str:
    """`type value` for an error message, in bounded time and size (a value built from YAML
    aliases can share a billion leaves); a secret's value is never shown."""
    if secret:
        return f"{type(value).__name__} (value hidden)"
    text = _REPR.repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def coerce(key: str, value: object, hint: Any) -> object:
    """`value` as the field type `hint`, within its ceilings (`config_bounds.check_value`), or
    ConfigError. Only int->float and list->tuple convert."""
    converted = _convert(key, value, hint)
    check_value(key, converted)
    return converted


def _convert(key: str, value: object, hint: Any) -> object:
    secret = is_secret(key)
    if get_origin(hint) is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list of {item.__name__}, got {describe(value, secret)}")
        return tuple(coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected float, got {describe(value, secret)}")
        if not math.isfinite(value):
            raise ConfigError(key, f"must be finite, got {describe(value, secret)}")
        return float(value)
    if hint is int and isinstance(value, bool):  # bool subclasses int; never accept it as one
        raise ConfigError(key, f"expected int, got {describe(value, secret)}")
    if not isinstance(value, hint):
        raise ConfigError(key, f"expected {hint.__name__}, got {describe(value, secret)}")
    return value


# ---------------------------------------------------------------------------------------------
# YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads `1e-3` as a float (PyYAML's YAML 1.1 reads it as a string), refuses
    duplicate keys (YAML would silently keep the last one) and refuses aliases (`*a`): a config
    never needs them, and ten levels of ten aliases each make 10**10 values from 300 bytes."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"aliases are not allowed in a bgai config (*{event.anchor})", event.start_mark
            )
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Hashable] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, Hashable) and key_node.tag != "tag:yaml.org,2002:merge":
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; nothing bigger is read


def read_yaml(path: Path) -> Mapping[Any, Any]:
    where = str(path)
    if not path.is_file():
        raise ConfigError(where, "config file not found")
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(where, f"config file larger than {MAX_CONFIG_BYTES} bytes")
        # _Loader is a SafeLoader: it builds plain data, never arbitrary objects.
        data = yaml.load(raw.decode("utf-8"), Loader=_Loader)
    except OSError as err:
        raise ConfigError(where, f"cannot read config file: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(where, f"malformed YAML: not UTF-8 ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        raise ConfigError(where, f"malformed YAML: {yaml_problem(err)}") from None
    if data is None:  # an empty file (or only comments)
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_text(key: str, text: str, hint: Any) -> object:
    """An env/CLI string as the value for a field of type `hint` (see the module docstring)."""
    if hint is str:
        return text
    if get_origin(hint) is tuple:
        if text.strip().startswith("["):
            return _yaml_scalar(key, text)
        items = [t.strip() for t in text.split(",")] if text.strip() else []
        item = get_args(hint)[0]
        return [t if item is str else _yaml_scalar(f"{key}[{i}]", t) for i, t in enumerate(items)]
    return _yaml_scalar(key, text)


def _yaml_scalar(key: str, text: str) -> object:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        shown = "the value" if is_secret(key) else _REPR.repr(text)
        raise ConfigError(key, f"cannot parse {shown}: {yaml_problem(err)}") from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """What is wrong and where (line, column), without PyYAML's snippet of the text: the snippet
    could show a password from the same file."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return type(err).__name__
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = f" ({err.context})" if err.context else ""
    return f"{where}{err.problem or 'unreadable'}{context}"


MAX_SECRET_BYTES = 4096  # a password file holds one line


def read_secret_file(key: str, text: str) -> str:
    """The secret held by the file `text` names (`redis.password_file`): its contents without
    surrounding whitespace. The error names the file, never what is in it."""
    path = Path(text).expanduser()
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_SECRET_BYTES + 1)
    except OSError as err:
        raise ConfigError(key, f"cannot read {path}: {err.strerror or type(err).__name__}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(key, f"{path} is larger than {MAX_SECRET_BYTES} bytes (one line expected)")
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path} is not UTF-8 text") from None
    if not secret or "\n" in secret:
        raise ConfigError(key, f"{path} must hold the secret on one line (it is {len(raw)} bytes)")
    return secret


def secret_keys(sections: Mapping[str, type]) -> list[str]:
    """The dotted keys of every field holding a secret (not the `*_file` ones naming a file)."""
    return [
        f"{name}.{key}"
        for name, cls in sections.items()
        for key in field_types(cls)
        if is_secret(key) and not key.endswith("_file")
    ]


def read_secrets(values: dict[str, dict[str, object]], sources: dict[str, str], secrets: list[str]) -> None:
    """Where a layer set `X_file` for a secret `X` (`redis.password_file`), `X` is what that
    file holds; setting both (non-empty) is refused, naming where each came from."""
    for dotted in secrets:
        section, _, name = dotted.partition(".")
        path = values.get(section, {}).get(f"{name}_file")
        if not path:
            continue
        if values[section].get(name):
            both = f"{sources[dotted]}; {sources[f'{dotted}_file']}"
            raise ConfigError(dotted, f"give it or {dotted}_file, not both ({both})")
        values[section][name] = read_secret_file(f"{dotted}_file", str(path))
        sources[dotted] = f"the file {dotted}_file names"
