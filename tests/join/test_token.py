"""The join token: what `bgai token create` prints is what `bgai join` reads back, whole; a
damaged, foreign, expired or otherwise unusable token is refused with the reason."""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import pytest

from bgai.join.token import (
    PREFIX,
    JoinToken,
    MetricsAccess,
    RedisAccess,
    TokenError,
    decode,
    parse_duration,
)

NOW = 1_700_000_000
CA = "-----BEGIN CERTIFICATE-----\nMIIBfake0123456789abcdef\n-----END CERTIFICATE-----\n"


def make_token(**changes: Any) -> JoinToken:
    fields: dict[str, Any] = {
        "host": "laptop-1",
        "roles": ("game", "eval"),
        "redis": RedisAccess("head.example.org", 6380, "bgai", CA, tls=True, db=3),
        "passwords": {"game": "pw-game-0123456789", "eval": "pw-eval-0123456789"},
        "usernames": {"game": "game@laptop-1", "eval": "eval@laptop-1"},
        "config": {"selfplay": {"batch_size": 8}, "model": {"hidden": [16]}},
        "created": NOW - 60,
        "expires": NOW + 3600,
        "metrics": MetricsAccess("https://head.example.org:9090/api/v1/write", "laptop-1", "pw-metrics-0123"),
    }
    fields.update(changes)
    return JoinToken(**fields)


def encode_raw(data: dict[str, Any]) -> str:
    """A token of any JSON body (as a foreign or future bgai would write one)."""
    raw = zlib.compress(json.dumps(data).encode())
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def raw_data(token: JoinToken) -> dict[str, Any]:
    body = token.encode()[len(PREFIX) :]
    data: dict[str, Any] = json.loads(
        zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    )
    return data


def test_a_token_decodes_to_every_field_it_was_made_with() -> None:
    token = make_token()
    text = token.encode()
    assert text.startswith("bgai1.") and "=" not in text
    back = decode(text, NOW)
    assert back == token
    assert (back.host, back.roles, back.created, back.expires) == (
        "laptop-1",
        ("game", "eval"),
        NOW - 60,
        NOW + 3600,
    )
    assert back.redis == RedisAccess("head.example.org", 6380, "bgai", CA, True, 3)
    assert back.passwords == token.passwords and back.usernames == token.usernames
    assert back.metrics == token.metrics and back.config == token.config


def test_a_token_without_metrics_or_expiry_decodes_so_and_never_expires() -> None:
    token = make_token(roles=("game",), passwords={"game": "x" * 20}, usernames={"game": "game@laptop-1"},
                       metrics=None, expires=0)  # fmt: skip
    back = decode(token.encode(), NOW + 10 * 365 * 86400)
    assert back == token and back.metrics is None and not back.expired(NOW * 2)


def test_a_token_pasted_across_lines_and_with_spaces_decodes() -> None:
    token = make_token()
    text = token.encode()
    pasted = "  " + "\n".join(text[i : i + 40] for i in range(0, len(text), 40)) + " \r\n\t"
    pasted = pasted.replace(text[50:60], text[50:55] + " " + text[55:60])
    assert decode(pasted, NOW) == token


def test_a_token_with_one_character_changed_is_refused_as_damaged() -> None:
    text = make_token().encode()
    i = len(text) // 2
    changed = text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1 :]
    with pytest.raises(TokenError, match="damaged"):
        decode(changed, NOW)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_a_truncated_token_is_refused_as_damaged(keep: float) -> None:
    text = make_token().encode()
    body = text[len(PREFIX) :]
    with pytest.raises(TokenError, match="damaged"):
        decode(PREFIX + body[: int(len(body) * keep)], NOW)


@pytest.mark.parametrize(
    "text",
    ["hello", "", "ghp_0123456789abcdef", "bgai2." + "A" * 40, "K10." + make_token().encode()[6:]],
)
def test_a_string_that_is_no_bgai_token_is_refused_as_such(text: str) -> None:
    with pytest.raises(TokenError, match="not a bgai join token"):
        decode(text, NOW)


def test_a_bgai_prefix_over_something_else_is_refused_not_crashed_on() -> None:
    for body in ("not base64 at all!!", base64.urlsafe_b64encode(b"plain text").decode()):
        with pytest.raises(TokenError, match="damaged"):
            decode(PREFIX + body, NOW)
    for data in ([1, 2, 3], "a string", 42, None):  # valid zlib JSON of the wrong shape
        raw = PREFIX + base64.urlsafe_b64encode(zlib.compress(json.dumps(data).encode())).decode()
        with pytest.raises(TokenError, match="incomplete or of another version"):
            decode(raw, NOW)


def test_an_expired_token_is_refused_naming_its_host() -> None:
    token = make_token(expires=NOW)
    assert decode(token.encode(), NOW - 1) == token  # a second before it expires
    with pytest.raises(TokenError, match=r"laptop-1 has expired.*bgai token create"):
        decode(token.encode(), NOW)


def test_a_token_of_another_version_is_refused() -> None:
    data = raw_data(make_token())
    assert data["v"] == 1
    with pytest.raises(TokenError, match="another version.*token version 2"):
        decode(encode_raw({**data, "v": 2}), NOW)
    del data["v"]
    with pytest.raises(TokenError, match="another version"):
        decode(encode_raw(data), NOW)


@pytest.mark.parametrize("roles", [["training"], ["game", "admin"], []])
def test_a_token_for_a_role_a_joined_host_cannot_run_is_refused(roles: list[str]) -> None:
    data = raw_data(make_token())
    with pytest.raises(TokenError, match="roles"):
        decode(encode_raw({**data, "roles": roles}), NOW)


@pytest.mark.parametrize("missing", ["host", "redis", "users", "config", "created", "expires"])
def test_a_token_missing_a_part_is_refused_as_incomplete(missing: str) -> None:
    data = raw_data(make_token())
    del data[missing]
    with pytest.raises(TokenError, match="incomplete"):
        decode(encode_raw(data), NOW)


def test_a_token_without_the_password_of_one_of_its_roles_is_refused() -> None:
    data = raw_data(make_token())
    del data["users"]["eval"]
    with pytest.raises(TokenError, match="incomplete"):
        decode(encode_raw(data), NOW)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * 86400),
        ("12h", 12 * 3600),
        ("30m", 30 * 60),
        ("2w", 14 * 86400),
        ("90s", 90),
        (" 7D ", 7 * 86400),
        ("never", 0),
        ("Never", 0),
        ("0", 0),
    ],
)
def test_durations_read_as_seconds_and_never_as_no_expiry(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7x", "0d", "", "d", "7", "-1d", "1.5d", "7d12h", "7 d"])
def test_a_duration_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
