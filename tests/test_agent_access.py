"""Grants on hosted tools: an MCP connection or a Python function of the agent API is for admins only
until a grant (`aigw grants add --connection NAME | --function NAME`) opens it, whichever endpoint the
request names (the open demo endpoint included). A request naming an ungranted one is a 403 in
OpenAI's shape naming `tools[i]`; a call the model makes is checked again when it runs. Also: the
admin API lists grants, and migration 0005 turns existing grants into endpoint grants (SQLite and
PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from alembic import command
from sqlalchemy import inspect, select, text

from aigw.agent.loop import AgentRun
from aigw.agent.toolbox import HostedTool, ToolOutcome, Toolbox
from aigw.agent.tracing import Tracing
from aigw.config import TracingConfig
from aigw.store import Store
from aigw.store.engine import create_store_engine
from aigw.store.migrate import alembic_config, current_revision
from aigw.store.schema import grants, principals
from tests.conftest import PROVIDER_DESTINATIONS, SECRETS
from tests.fakes.mcp_server import STDIO_COMMAND
from tests.gateway_process import GatewayProcess, cleanup, start_gateway
from tests.store_fixtures import database_url, head_revision  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent
REFRESH_SECONDS = 0.3
WAIT_SECONDS = 10.0
FUNCTION = {"type": "hosted_function", "name": "add_numbers"}
CONNECTION = {"type": "connection", "name": "local"}
CLIENT_TOOL = {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module")
def agw(fake_upstream) -> Iterator[GatewayProcess]:
    model = {k: v.replace("{fake}", fake_upstream.url) for k, v in PROVIDER_DESTINATIONS["anthropic"].items()}
    config = {
        "server": {"token_refresh_seconds": REFRESH_SECONDS},
        "endpoints": [{"name": "model", "destinations": [model]}],
        "agent": {
            "connections": [{"name": "local", "command": STDIO_COMMAND[0], "args": STDIO_COMMAND[1:], "require_approval": "never"}],
            "functions": [{"name": "add_numbers", "function": "tests.agent_functions:add"}],
        },
    }
    process = start_gateway(yaml.safe_dump(config), env={**SECRETS, "PYTHONPATH": str(ROOT)})
    try:
        for name in ("alice", "bob"):
            cli(process, "users", "create", name)
            cli(process, "grants", "add", "model", "--user", name)
        yield process
    finally:
        cleanup(process)


def cli(agw: GatewayProcess, *args: str) -> str:
    result = agw.cli(*args)
    assert result.returncode == 0, f"aigw {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def alice(agw: GatewayProcess) -> str:
    return cli(agw, "tokens", "create", "--name", "alice-token", "--principal", "alice", "--create-principal")


@pytest.fixture(scope="module")
def bob(agw: GatewayProcess) -> str:
    return cli(agw, "tokens", "create", "--name", "bob-token", "--principal", "bob", "--create-principal")


def post(agw: GatewayProcess, token: str, model: str, tools: list[dict[str, Any]], text: str = "hi") -> requests.Response:
    body = {"model": model, "input": text, "tools": tools}
    return requests.post(agw.url + "/mlflow/v1/responses", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def eventually(check: Any) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


@pytest.mark.parametrize("model", ["demo", "model"])
@pytest.mark.parametrize(
    "tools, param, kind, name",
    [
        ([FUNCTION], "tools[0]", "function", "add_numbers"),
        ([CLIENT_TOOL, CONNECTION], "tools[1]", "connection", "local"),
        ([{"type": "mcp", "server_label": "local"}], "tools[0]", "connection", "local"),
        ([{"type": "uc_function", "uc_function": {"name": "nope"}}], "tools[0]", "function", "nope"),  # no probing names
    ],
)
def test_an_ungranted_hosted_tool_is_a_403(agw: GatewayProcess, bob: str, model: str, tools: list, param: str, kind: str, name: str) -> None:
    answer = post(agw, bob, model, tools)
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert (error["param"], error["type"], error["code"]) == (param, "permission_error", "permission_denied"), error
    assert f"{kind} '{name}'" in error["message"]


@pytest.mark.parametrize("tools", [[FUNCTION], [CONNECTION]])
def test_admins_use_every_hosted_tool(agw: GatewayProcess, tools: list) -> None:
    answer = post(agw, agw.admin_token, "model", tools, '[[tool add_numbers {"a": 2, "b": 3}]] [[tool add {"a": 2, "b": 3}]]')
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"][-1]["content"][0]["text"] == "tool said: 5"


def test_a_grant_opens_a_tool_and_its_removal_closes_it(agw: GatewayProcess, alice: str, bob: str) -> None:
    cli(agw, "grants", "add", "--function", "add_numbers", "--user", "alice")
    cli(agw, "grants", "add", "local", "--user", "alice")  # an endpoint named like the connection grants nothing on it
    answer = eventually(lambda: (r := post(agw, alice, "model", [FUNCTION], '[[tool add_numbers {"a": 1, "b": 1}]]')).ok and r)
    assert answer, "the grant did not take effect"
    assert answer.json()["output"][-1]["content"][0]["text"] == "tool said: 2"
    assert post(agw, alice, "model", [CONNECTION]).status_code == 403
    assert post(agw, bob, "model", [FUNCTION]).status_code == 403  # the grant is alice's

    cli(agw, "grants", "add", "--connection", "local", "--group", "users")
    assert eventually(lambda: post(agw, bob, "demo", [CONNECTION]).ok)

    listed = {(g["resource_kind"], g["endpoint"], g["subject_name"]) for g in yaml.safe_load(cli(agw, "grants", "list", "--json"))}
    assert {("function", "add_numbers", "alice"), ("connection", "local", "users"), ("endpoint", "local", "alice")} <= listed
    assert "function:add_numbers" in cli(agw, "grants", "list", "--function", "add_numbers")
    only = yaml.safe_load(cli(agw, "grants", "list", "--connection", "local", "--json"))
    assert [(g["resource_kind"], g["subject_name"]) for g in only] == [("connection", "users")]

    headers = {"Authorization": f"Bearer {agw.admin_token}"}
    api = requests.get(agw.url + "/admin/v1/grants", params={"kind": "function"}, headers=headers, timeout=10)
    assert api.status_code == 200 and [g["endpoint"] for g in api.json()["grants"]] == ["add_numbers"]
    assert requests.get(agw.url + "/admin/v1/grants", params={"kind": "x"}, headers=headers, timeout=10).status_code == 400
    assert requests.get(agw.url + "/admin/v1/grants", headers={"Authorization": f"Bearer {alice}"}, timeout=10).status_code == 403

    cli(agw, "grants", "remove", "--function", "add_numbers", "--user", "alice")
    assert eventually(lambda: post(agw, alice, "model", [FUNCTION]).status_code == 403)
    assert agw.cli("grants", "remove", "--function", "add_numbers", "--user", "alice").returncode != 0
    assert agw.cli("grants", "add", "x", "--function", "y", "--user", "alice").returncode != 0  # one resource only


def test_a_call_is_checked_when_it_runs() -> None:
    """A grant revoked while a response runs stops the calls that come after."""
    granted = {("function", "f")}
    box = Toolbox(may_use=lambda kind, name: (kind, name) in granted)

    async def run(arguments: str) -> ToolOutcome:
        return ToolOutcome("ran")

    tool = HostedTool("f", "", {}, run, grant=("function", "f"))
    loop = AgentRun(
        call=None, endpoint=None, body={"model": "m"}, history=[], new_items=[], toolbox=box,  # type: ignore[arg-type]
        tracing=Tracing(TracingConfig()), max_turns=1, response_id="resp_1", created_at=0,
    )  # fmt: skip
    assert asyncio.run(loop._run(tool, "{}")) == ToolOutcome("ran")
    granted.clear()
    outcome = asyncio.run(loop._run(tool, "{}"))
    assert outcome.output == "" and "may not use the function 'f'" in (outcome.error or "")


def test_migration_0005_makes_existing_grants_endpoint_grants(database_url: str) -> None:  # noqa: F811
    engine = create_store_engine(database_url)
    try:
        with engine.connect() as conn, conn.begin():
            command.upgrade(alembic_config(conn), "0004")
            now = datetime.now(timezone.utc)
            alice = conn.execute(principals.insert().values(name="alice", kind="user", is_admin=False, created_at=now).returning(principals.c.id)).scalar_one()
            # The 0004 table has no resource_kind: insert the columns it has.
            at = now.replace(tzinfo=None) if conn.dialect.name == "sqlite" else now
            conn.execute(
                text("INSERT INTO grants (endpoint, principal_id, permission, created_at) VALUES ('chat', :p, 'CAN_QUERY', :t)"),
                {"p": alice, "t": at},
            )
        assert "resource_kind" not in {c["name"] for c in inspect(engine).get_columns("grants")}
    finally:
        engine.dispose()

    with Store.open(database_url) as opened:
        assert current_revision(opened.engine) == head_revision()
        (grant,) = opened.access.list_grants()
        assert (grant.resource_kind, grant.endpoint, grant.subject_name) == ("endpoint", "chat", "alice")
        # An endpoint and a function of the same name are granted apart.
        opened.access.grant("chat", "user", "alice", "CAN_QUERY", "function")
        assert {(g.resource_kind, g.endpoint) for g in opened.access.list_grants("chat")} == {("endpoint", "chat"), ("function", "chat")}
        with opened.engine.connect() as conn, conn.begin():
            command.downgrade(alembic_config(conn), "0004")
        assert current_revision(opened.engine) == "0004"
        with opened.engine.connect() as conn:
            assert conn.execute(select(grants.c.endpoint)).scalars().all() == ["chat"]  # the function grant went

    with Store.open(database_url) as reopened:
        assert current_revision(reopened.engine) == head_revision()
        assert [g.resource_kind for g in reopened.access.list_grants()] == ["endpoint"]
