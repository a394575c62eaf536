"""Hosts joined by token on a real redis-server with the fleet's ACL file: `joined.add` makes
game@HOST / eval@HOST confined as an inventory host's users are, and gives their ACL file lines
with the joined mark, which `acl.set_joined` puts in the file (kept by a rewrite of the file from
the inventory, read back by Redis); `joined.revoke` deletes them and cuts off their open
connections at once."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ansible_filters
import pytest
import redis
from redis_server import redis_server

from bgai.config import load_config
from bgai.store import acl, joined
from bgai.store.client import connect
from bgai.store.keys import Keys

KEYS = Keys("bgai")
REPO = Path(__file__).resolve().parents[2]
INVENTORY = ["w1", "w2"]


@dataclasses.dataclass
class Head:
    port: int
    admin: redis.Redis
    secrets: dict[str, str]
    acl_file: Path
    secrets_file: Path

    def login(self, user: str, password: str) -> redis.Redis:
        """A client as a worker makes one (bgai.store.client.connect)."""
        rc = dataclasses.replace(load_config(env={}).redis, port=self.port, username=user, password=password)
        return connect(rc)


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    secrets_file, acl_file = tmp_path / "secrets.env", tmp_path / "users.acl"
    pw = acl.ensure_secrets(secrets_file, acl_file, KEYS, INVENTORY)
    with redis_server(tmp_path / "redis", extra=("--aclfile", str(acl_file))) as port:
        admin = redis.Redis(port=port, username="admin", password=pw["admin"])
        yield Head(port, admin, pw, acl_file, secrets_file)
        admin.close()


def both_roles(host: str = "laptop") -> joined.JoinedHost:
    return joined.JoinedHost(host, ("game", "eval"), created=1_700_000_000, expires=1_700_604_800)


def without_host(user: dict[str, Any], host: str) -> dict[str, Any]:
    """An ACL GETUSER answer with the host's name taken out (to compare two hosts' users)."""
    return {**user, "passwords": [], "keys": [k.replace(f":{host}:", ":HOST:") for k in user["keys"]]}


def test_a_joined_hosts_users_log_in_and_are_confined_as_an_inventory_hosts_are(head: Head) -> None:
    passwords, _ = joined.add(head.admin, KEYS, both_roles())
    assert set(passwords) == {"game", "eval"} and len(set(passwords.values())) == 2
    assert not set(passwords.values()) & set(head.secrets.values())  # fresh, not a role's secret
    # the same keys (its own host's in place of w1's) and the same commands as game@w1, eval@w1;
    # the mark is a channel pattern, which grants nothing (no role may use pub/sub)
    for role in ("game", "eval"):
        mine = head.admin.acl_getuser(f"{role}@laptop")
        inventory = head.admin.acl_getuser(f"{role}@w1")
        assert mine is not None and inventory is not None
        assert mine["channels"] == [acl.JOINED_MARK] and inventory["channels"] == []
        for part in ("keys", "commands", "categories", "selectors", "enabled"):
            assert without_host(mine, "laptop")[part] == without_host(inventory, "w1")[part], part
    game = head.login("game@laptop", passwords["game"])
    assert game.ping()
    head.admin.set(KEYS.model_weights, b"the weights")
    assert game.get(KEYS.model_weights) == b"the weights"  # reads the model
    game.set(KEYS.worker("laptop:game:0"), "{}")  # writes its own registry record
    for attempt in (
        lambda: game.set(KEYS.model_weights, b"evil"),
        lambda: game.set(KEYS.run_status, "stopped"),
        lambda: game.set(KEYS.worker("w1:game:0"), "{}"),  # another host's record
        lambda: game.get(KEYS.joined("laptop")),
        lambda: game.publish(acl.JOINED_MARK[1:], "hello"),
        lambda: game.acl_list(),
        lambda: game.flushall(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert head.admin.get(KEYS.model_weights) == b"the weights"
    evalu = head.login("eval@laptop", passwords["eval"])
    evalu.set(KEYS.eval("run1").target, "{}")  # the eval user writes eval keys, the game user cannot
    with pytest.raises(redis.exceptions.NoPermissionError):
        game.set(KEYS.eval("run1").target, "{}")
    game.close()
    evalu.close()


def test_only_the_roles_asked_for_get_a_user(head: Head) -> None:
    passwords, lines = joined.add(head.admin, KEYS, dataclasses.replace(both_roles(), roles=("game",)))
    assert set(passwords) == {"game"}
    assert head.admin.acl_getuser("game@laptop") and head.admin.acl_getuser("eval@laptop") is None
    assert [line.split()[1] for line in lines] == ["game@laptop"]


def test_the_joined_lines_in_the_acl_file_outlive_a_reload_and_a_rewrite_from_the_inventory(
    head: Head,
) -> None:
    assert joined.acl_file(head.admin) == str(head.acl_file)
    before = head.acl_file.read_text()
    passwords, lines = joined.add(head.admin, KEYS, both_roles())
    assert head.acl_file.read_text() == before  # Redis's file is the caller's to write
    assert [line.split()[1] for line in lines] == ["game@laptop", "eval@laptop"]
    assert all(line.split()[:2] != ["user", "default"] and acl.JOINED_MARK in line.split() for line in lines)
    assert not any(pw in "\n".join(lines) for pw in passwords.values())  # hashes only
    acl.set_joined(head.acl_file, "laptop", lines)  # what `bgai token create` does next
    text = head.acl_file.read_text()
    assert text == before + "\n".join(lines) + "\n"  # every other line byte for byte
    assert acl.joined_lines(text) == lines
    # Redis builds its users from the file alone (ACL LOAD, as at a restart): they still log in
    head.admin.acl_load()
    assert head.login("game@laptop", passwords["game"]).ping()
    assert head.login("eval@laptop", passwords["eval"]).ping()
    # `bgai acl` / the redis role rewrite the file from the inventory: the joined lines stay
    assert acl.ensure_secrets(head.secrets_file, head.acl_file, KEYS, INVENTORY) == head.secrets
    assert acl.joined_lines(head.acl_file.read_text()) == lines
    acl.ensure_secrets(head.secrets_file, head.acl_file, KEYS, ["w1"])  # w2 leaves the inventory
    text = head.acl_file.read_text()
    assert "game@w2" not in text and acl.joined_lines(text) == lines
    users = [line.split()[1] for line in text.splitlines()]
    assert len(users) == len(set(users))  # each user once
    head.admin.acl_load()
    assert head.login("game@laptop", passwords["game"]).ping()
    assert head.login("game@w1", acl.host_password(head.secrets["game"], "game", "w1")).ping()


def test_set_joined_replaces_or_removes_one_hosts_lines_and_no_others(head: Head) -> None:
    first, first_lines = joined.add(head.admin, KEYS, both_roles())
    _, other = joined.add(head.admin, KEYS, both_roles("other"))
    acl.set_joined(head.acl_file, "laptop", first_lines)
    acl.set_joined(head.acl_file, "other", other)
    new, new_lines = joined.add(
        head.admin, KEYS, dataclasses.replace(both_roles(), roles=("game",)), replace=True
    )
    acl.set_joined(head.acl_file, "laptop", new_lines)  # a fresh token, game only
    assert acl.joined_lines(head.acl_file.read_text()) == [*other, *new_lines]
    acl.set_joined(head.acl_file, "w1", [])  # an inventory host's users are not joined ones
    assert "user game@w1 " in head.acl_file.read_text()
    head.admin.acl_load()
    assert head.login("game@laptop", new["game"]).ping()
    with pytest.raises(redis.AuthenticationError):
        head.login("game@laptop", first["game"]).ping()
    with pytest.raises(redis.AuthenticationError):
        head.login("eval@laptop", first["eval"]).ping()
    acl.set_joined(head.acl_file, "laptop", [])
    assert acl.joined_lines(head.acl_file.read_text()) == other


def test_the_ansible_filter_keeps_the_joined_lines_of_the_current_file(head: Head) -> None:
    _, lines = joined.add(head.admin, KEYS, both_roles())
    acl.set_joined(head.acl_file, "laptop", lines)
    current = head.acl_file.read_text()
    module = ansible_filters.plugin()
    make = module.FilterModule().filters()["bgai_acl_lines"]
    made = make(head.secrets, "bgai", INVENTORY, current)
    assert made == [*acl.acl_lines(KEYS, head.secrets, INVENTORY), *lines]
    assert make(head.secrets, "bgai", INVENTORY) == acl.acl_lines(KEYS, head.secrets, INVENTORY)  # no file


def test_a_host_that_has_users_is_refused_unless_replaced_and_then_its_old_password_fails(head: Head) -> None:
    old, _ = joined.add(head.admin, KEYS, both_roles())
    with pytest.raises(joined.HostExistsError, match="game@laptop, eval@laptop"):
        joined.add(head.admin, KEYS, both_roles())
    with pytest.raises(joined.HostExistsError, match="game@w1"):  # an inventory host too
        joined.add(head.admin, KEYS, both_roles("w1"))
    assert head.login("game@laptop", old["game"]).ping()  # a refusal changes nothing
    new, _ = joined.add(head.admin, KEYS, dataclasses.replace(both_roles(), roles=("game",)), replace=True)
    assert new["game"] != old["game"]
    assert head.login("game@laptop", new["game"]).ping()
    with pytest.raises(redis.AuthenticationError):
        head.login("game@laptop", old["game"]).ping()
    with pytest.raises(redis.AuthenticationError):  # the replacement asked for game alone
        head.login("eval@laptop", old["eval"]).ping()
    assert [h.roles for h in joined.hosts(head.admin, KEYS)] == [("game",)]


def test_hosts_lists_every_joined_host_with_its_roles_and_expiry(head: Head) -> None:
    assert joined.hosts(head.admin, KEYS) == []
    joined.add(head.admin, KEYS, both_roles("zeta"))
    joined.add(head.admin, KEYS, joined.JoinedHost("alpha", ("eval",), created=5, expires=0))
    assert joined.hosts(head.admin, KEYS) == [
        joined.JoinedHost("alpha", ("eval",), 5, 0),
        joined.JoinedHost("zeta", ("game", "eval"), 1_700_000_000, 1_700_604_800),
    ]
    assert joined.hosts(head.admin, Keys("other")) == []  # another prefix's run


def test_the_coordinator_reads_the_joined_hosts_metrics_users_and_writes_none(head: Head) -> None:
    joined.add(head.admin, KEYS, dataclasses.replace(both_roles(), metrics_hash="$2b$10$laptophash"))
    joined.add(head.admin, KEYS, both_roles("nometrics"))
    assert joined.hosts(head.admin, KEYS)[0].metrics_hash == "$2b$10$laptophash"
    coordinator = head.login("coordinator", head.secrets["coordinator"])
    assert joined.metrics_users(coordinator, KEYS) == {"laptop": "$2b$10$laptophash"}
    with pytest.raises(redis.exceptions.NoPermissionError):
        coordinator.set(KEYS.joined("laptop"), "{}")
    with pytest.raises(redis.exceptions.NoPermissionError):
        coordinator.delete(KEYS.joined("laptop"))
    joined.revoke(head.admin, KEYS, "laptop")
    assert joined.metrics_users(coordinator, KEYS) == {}
    coordinator.close()


def test_revoke_deletes_the_users_and_cuts_off_their_open_connections(head: Head) -> None:
    passwords, lines = joined.add(head.admin, KEYS, both_roles())
    _, other = joined.add(head.admin, KEYS, both_roles("other"))
    acl.set_joined(head.acl_file, "laptop", lines)
    acl.set_joined(head.acl_file, "other", other)
    game = head.login("game@laptop", passwords["game"])
    evalu = head.login("eval@laptop", passwords["eval"])
    assert game.ping() and evalu.ping()  # connected and logged in
    assert joined.revoke(head.admin, KEYS, "laptop") == ["game@laptop", "eval@laptop"]
    # Redis closed their connections: the next command reconnects and its login is refused
    for client in (game, evalu):
        with pytest.raises(redis.AuthenticationError):
            client.get(KEYS.model_weights)
    with pytest.raises(redis.AuthenticationError):
        head.login("game@laptop", passwords["game"]).ping()
    assert head.admin.acl_getuser("game@laptop") is None and head.admin.acl_getuser("eval@laptop") is None
    assert [h.host for h in joined.hosts(head.admin, KEYS)] == ["other"]
    assert head.admin.get(KEYS.joined("laptop")) is None
    acl.set_joined(head.acl_file, "laptop", [])  # what `bgai token revoke` does next
    assert acl.joined_lines(head.acl_file.read_text()) == other
    head.admin.acl_load()  # a restart does not bring them back
    with pytest.raises(redis.AuthenticationError):
        head.login("game@laptop", passwords["game"]).ping()


def test_revoking_a_host_that_never_joined_changes_nothing(head: Head) -> None:
    before = head.acl_file.read_text()
    assert joined.revoke(head.admin, KEYS, "nobody") == []
    assert head.acl_file.read_text() == before


def test_a_redis_without_an_acl_file_keeps_joined_users_in_memory(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as port:
        r = redis.Redis(port=port)
        assert joined.acl_file(r) == ""
        passwords, _ = joined.add(r, KEYS, both_roles())
        assert redis.Redis(port=port, username="game@laptop", password=passwords["game"]).ping()
        assert joined.revoke(r, KEYS, "laptop") == ["game@laptop", "eval@laptop"]
        r.close()
