"""`aigw users|service-principals|groups|grants` and `aigw tokens`: the main flows as a user runs them
(`aigw` subprocesses against a data directory, and once against PostgreSQL), the error cases through
the same command tree in-process (each subprocess pays ~1 s of imports)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from aigw.cli import main
from tests.gateway_process import AIGW
from tests.store_fixtures import postgres_database  # noqa: F401  (a fixture)

Run = Callable[..., subprocess.CompletedProcess]


def _runner(env: dict[str, str]) -> Run:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    full_env.update(env)

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([AIGW, *args], env=full_env, capture_output=True, text=True, timeout=60)
        if ok:
            assert result.returncode == 0, f"aigw {' '.join(args)}: {result.stderr}"
        return result

    return run


def _json(result: subprocess.CompletedProcess | Result) -> list[dict]:
    return json.loads(result.stdout)


def _failed(result: subprocess.CompletedProcess | Result, message: str, status: int = 1) -> None:
    code = result.returncode if isinstance(result, subprocess.CompletedProcess) else result.exit_code
    assert code == status, (code, result.stdout, result.stderr)
    assert message in result.stderr and result.stdout == ""


# -- as a user runs them ------------------------------------------------------------------------------


def test_principals_groups_grants_and_tokens(tmp_path: Path) -> None:
    aigw = _runner({"AIGW_DATA_DIR": str(tmp_path)})
    assert "Created user 'alice'" in aigw("users", "create", "alice").stderr
    aigw("users", "create", "root", "--admin")
    aigw("service-principals", "create", "ci-bot")
    users = _json(aigw("users", "list", "--json"))
    assert [(u["name"], u["kind"], u["is_admin"]) for u in users] == [("alice", "user", False), ("root", "user", True)]
    table = aigw("users", "list").stdout.splitlines()
    assert table[0].split() == ["NAME", "ADMIN", "CREATED"] and table[2].split()[:2] == ["root", "yes"]
    assert [p["name"] for p in _json(aigw("service-principals", "list", "--json"))] == ["ci-bot"]

    aigw("groups", "create", "eng")
    aigw("groups", "add-member", "eng", "alice")
    aigw("groups", "add-member", "eng", "ci-bot")
    members = _json(aigw("groups", "members", "eng", "--json"))
    assert [(m["name"], m["kind"]) for m in members] == [("alice", "user"), ("ci-bot", "service_principal")]
    groups = {g["name"]: g["member_count"] for g in _json(aigw("groups", "list", "--json"))}
    assert groups == {"eng": 2, "users": 3}

    added = aigw("grants", "add", "demo", "--user", "alice")
    assert "Granted CAN_QUERY on 'demo' to user 'alice'" in added.stderr and "Note" not in added.stderr
    typo = aigw("grants", "add", "chta", "--group", "eng", "--permission", "can_manage")
    assert "not an endpoint of this configuration" in typo.stderr
    aigw("grants", "add", "chta", "--service-principal", "ci-bot")
    grants = _json(aigw("grants", "list", "--json"))
    assert [(g["endpoint"], g["subject_kind"], g["subject_name"], g["permission"]) for g in grants] == [
        ("chta", "group", "eng", "CAN_MANAGE"),
        ("chta", "service_principal", "ci-bot", "CAN_QUERY"),
        ("demo", "user", "alice", "CAN_QUERY"),
    ]
    assert aigw("grants", "list", "demo").stdout.splitlines()[1].split()[:4] == ["demo", "user", "alice", "CAN_QUERY"]
    _failed(aigw("grants", "remove", "chta", "--group", "eng", "--permission", "CAN_QUERY", ok=False), "no CAN_QUERY")
    aigw("grants", "remove", "chta", "--group", "eng")

    token = aigw("tokens", "create", "--name", "ci", "--principal", "svc", "--service-principal", "--create-principal").stdout.strip()
    assert token.startswith("aigw_") and "\n" not in token
    assert [p["name"] for p in _json(aigw("service-principals", "list", "--json"))] == ["ci-bot", "svc"]
    aigw("tokens", "create", "--name", "laptop", "--principal", "alice")
    tokens = _json(aigw("tokens", "list", "--json"))
    assert [(t["name"], t["principal_name"]) for t in tokens] == [("ci", "svc"), ("laptop", "alice")]
    assert token.split("_", 2)[2] not in json.dumps(tokens)

    assert "revoked its 1 active token" in aigw("users", "delete", "alice").stderr
    assert [t["name"] for t in _json(aigw("tokens", "list", "--json"))] == ["ci"]
    assert [g["subject_name"] for g in _json(aigw("grants", "list", "--json"))] == ["ci-bot"]
    _failed(aigw("users", "delete", "root", ok=False), "last admin")


def test_the_same_commands_on_postgresql(postgres_database: str) -> None:  # noqa: F811
    aigw = _runner({"AIGW_DATABASE_URL": postgres_database})
    aigw("tokens", "create", "--name", "laptop", "--principal", "alice", "--create-principal")
    aigw("groups", "create", "eng")
    aigw("groups", "add-member", "eng", "alice")
    aigw("grants", "add", "demo", "--group", "eng", "--permission", "CAN_MANAGE")
    (grant,) = _json(aigw("grants", "list", "--json"))
    assert (grant["subject_name"], grant["permission"]) == ("eng", "CAN_MANAGE")
    aigw("users", "delete", "alice")
    assert _json(aigw("groups", "members", "eng", "--json")) == []


# -- the error cases, in-process ----------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Callable[..., Result]]:
    env = {k: None for k in os.environ if k.startswith("AIGW_")} | {"AIGW_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    yield lambda *args: runner.invoke(main, list(args), env=env)  # type: ignore[arg-type]


def test_principal_errors(cli: Callable[..., Result]) -> None:
    cli("users", "create", "alice")
    cli("service-principals", "create", "bot")
    _failed(cli("users", "create", "alice"), "already exists")
    _failed(cli("service-principals", "create", "alice"), "already exists")  # one namespace
    _failed(cli("users", "create", " "), "not blank")
    _failed(cli("users", "delete", "bot"), "'bot' is a service principal, not a user")
    _failed(cli("service-principals", "delete", "nobody"), "no service principal 'nobody'")
    _failed(cli("tokens", "create", "--name", "x", "--principal", "alice", "--service-principal"), "is a user")
    # A typo must not mint a new identity: creating a principal takes --create-principal.
    _failed(cli("tokens", "create", "--name", "y", "--principal", "alcie"), "no principal named 'alcie'")
    assert "alcie" not in cli("users", "list").stdout
    assert cli("service-principals", "delete", "bot").exit_code == 0
    empty = cli("service-principals", "list")
    assert empty.stdout == "" and "No service principals." in empty.stderr
    assert _json(cli("service-principals", "list", "--json")) == []


def test_group_errors(cli: Callable[..., Result]) -> None:
    cli("users", "create", "alice")
    cli("groups", "create", "eng")
    _failed(cli("groups", "create", "eng"), "already exists")
    assert "Added 'alice' to 'eng'" in cli("groups", "add-member", "eng", "alice").stderr
    assert "already a member" in cli("groups", "add-member", "eng", "alice").stderr
    _failed(cli("groups", "remove-member", "eng", "nobody"), "no principal 'nobody'")
    assert cli("groups", "remove-member", "eng", "alice").exit_code == 0
    _failed(cli("groups", "remove-member", "eng", "alice"), "not a member")
    _failed(cli("groups", "add-member", "ops", "alice"), "no group 'ops'")
    _failed(cli("groups", "add-member", "users", "alice"), "built-in")
    _failed(cli("groups", "remove-member", "users", "alice"), "built-in")
    _failed(cli("groups", "delete", "users"), "built-in")
    assert [m["name"] for m in _json(cli("groups", "members", "users", "--json"))] == ["alice"]
    assert cli("groups", "delete", "eng").exit_code == 0
    _failed(cli("groups", "delete", "eng"), "no group 'eng'")
    _failed(cli("groups", "members", "eng"), "no group 'eng'")


def test_grant_errors(cli: Callable[..., Result]) -> None:
    cli("users", "create", "alice")
    cli("service-principals", "create", "bot")
    _failed(cli("grants", "add", "demo", "--user", "bot"), "is a service principal, not a user")
    _failed(cli("grants", "add", "demo", "--service-principal", "alice"), "is a user, not a service principal")
    _failed(cli("grants", "add", "demo", "--group", "nope"), "no group 'nope'")
    _failed(cli("grants", "add", "demo"), "exactly one of", status=2)
    _failed(cli("grants", "add", "demo", "--user", "alice", "--group", "eng"), "exactly one of", status=2)
    _failed(cli("grants", "add", "demo", "--user", "alice", "--permission", "OWN"), "OWN", status=2)
    _failed(cli("grants", "remove", "demo", "--user", "alice"), "user 'alice' has no grant on 'demo'")
    assert cli("grants", "add", "demo", "--group", "users").exit_code == 0
    assert cli("grants", "add", "demo", "--group", "users", "--permission", "CAN_MANAGE").exit_code == 0
    (grant,) = _json(cli("grants", "list", "demo", "--json"))
    assert grant["permission"] == "CAN_MANAGE"  # granting again replaces
    assert cli("grants", "remove", "demo", "--group", "users").exit_code == 0
    assert "only admins may query it" in cli("grants", "list", "demo").stderr
