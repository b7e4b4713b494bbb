"""A database outage end to end: a real gateway on PostgreSQL keeps answering while PostgreSQL is
stopped (the token cache serves authentication) and, once PostgreSQL is back, every request has
exactly one usage record (the writer kept them in memory and writes them). A clean stop (SIGTERM)
during an outage leaves the records in the spill directory, and a gateway started on that data
directory writes them.

The PostgreSQL cluster of this machine is stopped with pg_ctlcluster and ALWAYS started again in a
`finally`, waiting until it accepts connections: other tests need it. Without a cluster to control
the tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import requests
import yaml

from tests.gateway_process import GatewayProcess, cleanup, start_gateway
from tests.store_fixtures import POSTGRES_ADMIN_URL, postgres_database  # noqa: F401  (a fixture)

TAGS_HEADER = "X-Aigw-Request-Tags"
PG_CLUSTERS = Path("/etc/postgresql")


def _cluster_version() -> str | None:
    if shutil.which("pg_ctlcluster") is None or not PG_CLUSTERS.is_dir():
        return None
    versions = sorted((p.name for p in PG_CLUSTERS.iterdir() if (p / "main").is_dir()), key=lambda v: float(v))
    return versions[-1] if versions else None


def _postgres_up() -> bool:
    try:
        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _pg_ctl(version: str, action: str) -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def _wait(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


class Postgres:
    """Stops and starts this machine's PostgreSQL cluster."""

    def __init__(self, version: str) -> None:
        self.version = version

    def stop(self) -> None:
        _pg_ctl(self.version, "stop")
        _wait(lambda: not _postgres_up(), 30, "PostgreSQL to stop")

    def start(self) -> None:
        """Start it (if it is not running) and wait until it accepts connections."""
        if not _postgres_up():
            try:
                _pg_ctl(self.version, "start")
            except subprocess.CalledProcessError as exc:
                if _pg_ctl_status(self.version) != 0:  # 0: running after all (started by someone else)
                    raise AssertionError(f"could not start PostgreSQL: {exc.stderr!r}") from exc
        _wait(_postgres_up, 60, "PostgreSQL to accept connections", interval=0.2)


def _pg_ctl_status(version: str) -> int:
    return subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "status"], capture_output=True, timeout=30
    ).returncode


@pytest.fixture
def postgres(postgres_database) -> Iterator[Postgres]:  # noqa: F811  (requests the schema first)
    version = _cluster_version()
    if version is None or not _postgres_up():
        reason = "no local PostgreSQL cluster to stop and start (pg_ctlcluster, /etc/postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: required when CI=true")
        pytest.skip(reason)
    cluster = Postgres(version)
    try:
        yield cluster
    finally:
        cluster.start()  # whatever happened: other tests need it


def _config(fake: str) -> str:
    destination = {"provider": "openai_compatible", "model": "outage", "base_url": f"{fake}/v1"}
    return yaml.safe_dump({"server": {"token_refresh_seconds": 0.5}, "endpoints": [{"name": "chat", "destinations": [destination]}]})


def _post(gateway: GatewayProcess, token: str, case: str) -> requests.Response:
    body = {"model": "chat", "messages": [{"role": "user", "content": case}]}
    headers = {"authorization": f"Bearer {token}", TAGS_HEADER: json.dumps({"case": case})}
    return requests.post(f"{gateway.url}/openai/v1/chat/completions", json=body, headers=headers, timeout=20)


def _status(gateway: GatewayProcess, token: str, case: str) -> int:
    return _post(gateway, token, case).status_code


def _ask(gateway: GatewayProcess, token: str, case: str) -> None:
    response = _post(gateway, token, case)
    assert response.status_code == 200, f"{case}: {response.status_code} {response.text}"
    assert response.json()["choices"][0]["message"]["content"] == f"echo: {case}"


def _metric(gateway: GatewayProcess, name: str) -> float:
    for line in requests.get(gateway.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def _records_by_case(gateway: GatewayProcess) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in gateway.usage_records():
        case = (row["tags"] or {}).get("case")
        counts[case] = counts.get(case, 0) + 1
    return counts


def _only(counts: dict[str, int], cases: list[str]) -> dict[str, int | None]:
    return {case: counts.get(case) for case in cases}


def _wait_for_records(gateway: GatewayProcess, cases: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            counts = _records_by_case(gateway)
        except Exception:  # the database may still be starting
            counts = {}
        if all(case in counts for case in cases) or time.monotonic() > deadline:
            return counts
        time.sleep(0.3)


def _spill_lines(spill_dir: Path) -> list[dict]:
    lines = []
    for path in sorted(spill_dir.glob("records-*.jsonl")):
        lines += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines


def test_requests_are_answered_and_recorded_through_a_database_outage(postgres, postgres_database, fake_upstream):  # noqa: F811
    gateway = start_gateway(_config(fake_upstream.url), {"AIGW_DATABASE_URL": postgres_database})
    token = gateway.admin_token
    before, during, after = [f"before-{i}" for i in range(3)], [f"during-{i}" for i in range(8)], ["after-0", "after-1"]
    try:
        # A user who may query the endpoint through a grant, besides the admin.
        commands = [("tokens", "create", "--name", "carol-key", "--principal", "carol", "--create-principal"), ("grants", "add", "chat", "--group", "users")]
        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(lambda args: gateway.cli(*args), commands))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        user_token = results[0].stdout.strip()
        _wait(lambda: _status(gateway, user_token, "carol-poll") == 200, 10, "the grant to reach the gateway")
        for case in before:
            _ask(gateway, token, case)
        _ask(gateway, user_token, "carol-before")
        before.append("carol-before")
        _wait(lambda: _metric(gateway, "aigw_records_buffered") == 0, 15, "the records before the outage")
        assert _only(_records_by_case(gateway), before) == {case: 1 for case in before}

        try:
            postgres.stop()
            # Answered: tokens and grants are served from memory; the records wait there too.
            for i, case in enumerate(during):
                _ask(gateway, user_token if i % 2 else token, case)
                time.sleep(0.1)
            _wait(lambda: _metric(gateway, "aigw_record_store_up") == 0, 10, "the writer to see the outage")
            assert _metric(gateway, "aigw_records_buffered") >= 1
            assert _metric(gateway, "aigw_record_store_failures_total") >= 1
        finally:
            postgres.start()

        for case in after:
            _ask(gateway, token, case)
        cases = before + during + after
        counts = _wait_for_records(gateway, cases, timeout=30)
        assert _only(counts, cases) == {case: 1 for case in cases}  # none lost, none twice
        _wait(lambda: _metric(gateway, "aigw_record_store_up") == 1, 10, "the writer to see the store back")
        assert _metric(gateway, "aigw_records_buffered") == 0
        assert gateway.process.poll() is None
    finally:
        cleanup(gateway)


def test_a_stop_during_an_outage_spills_and_a_restart_writes_the_records(postgres, postgres_database, fake_upstream):  # noqa: F811
    env = {"AIGW_DATABASE_URL": postgres_database}
    first = start_gateway(_config(fake_upstream.url), env)
    token = first.admin_token
    second: GatewayProcess | None = None
    before, during = ["spill-before"], [f"spill-during-{i}" for i in range(5)]
    spill_dir = first.data_dir / "spill"
    try:
        _ask(first, token, before[0])
        _wait(lambda: _metric(first, "aigw_records_buffered") == 0, 15, "the record before the outage")
        try:
            postgres.stop()
            for case in during:
                _ask(first, token, case)
            started = time.monotonic()
            first.process.terminate()  # SIGTERM: a clean stop
            code = first.process.wait(timeout=20)
            assert code == 0, first.log()
            assert time.monotonic() - started < 10  # the store's 5 s, not a hang
            lines = _spill_lines(spill_dir)
            usage = sorted(line["record"]["tags"]["case"] for line in lines if line["kind"] == "usage")
            assert usage == sorted(during)
            assert all(line["record"]["status"] == 200 for line in lines if line["kind"] == "usage")
        finally:
            postgres.start()

        # A gateway on the same data directory replays the spill files.
        second = start_gateway(_config(fake_upstream.url), {**env, "AIGW_DATA_DIR": str(first.data_dir)})
        cases = before + during
        counts = _wait_for_records(second, cases, timeout=20)
        assert counts == {case: 1 for case in cases}
        _wait(lambda: _spill_lines(spill_dir) == [], 10, "the replayed spill files to be deleted")
        assert _metric(second, "aigw_records_replayed_total") == len(during)
    finally:
        if second is not None:
            cleanup(second)
        cleanup(first)
