"""SIGHUP reload and `serve --workers N`, on real gateway processes: a reload under continuous traffic
loses no request, a bad file is refused while the old configuration serves on, N workers share one
port and one Redis limit exactly, a killed worker comes back, SIGTERM ends them all."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.gateway_process import AIGW, GatewayProcess, cleanup, start_gateway
from tests.test_governance_limits import REDIS_URL, _redis_reachable


def _compat(fake: str, model: str) -> dict[str, Any]:
    return {"provider": "openai_compatible", "model": model, "base_url": f"{fake}/v1"}


def _config(fake: str, endpoints: dict[str, str], limits: dict[str, int] | None = None, **top: Any) -> str:
    """Endpoints by name -> fake model (`slow-300`: answers after 300 ms), with calls-per-minute limits."""
    listed = []
    for name, model in endpoints.items():
        endpoint: dict[str, Any] = {"name": name, "destinations": [_compat(fake, model)]}
        if limits and name in limits:
            endpoint["rate_limits"] = [{"key": "endpoint", "calls": limits[name]}]
        listed.append(endpoint)
    return yaml.safe_dump({"endpoints": listed, **top})


def _chat(gateway: GatewayProcess, endpoint: str, session: requests.Session | None = None) -> requests.Response:
    body = {"model": endpoint, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {gateway.admin_token}"}
    return (session or requests).post(f"{gateway.url}/openai/v1/chat/completions", json=body, headers=headers, timeout=30)


def _rewrite(gateway: GatewayProcess, config: str) -> None:
    path = gateway.data_dir / "aigw.yaml"
    path.write_text(config)


def _hangup_and_wait(gateway: GatewayProcess, expect: str, count: int = 1, timeout: float = 15.0) -> None:
    """SIGHUP the gateway, then wait until its log holds `expect` `count` times more than before."""
    before = gateway.log().count(expect)
    gateway.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while gateway.log().count(expect) < before + count:
        assert time.monotonic() < deadline, f"no {expect!r} in the log:\n{gateway.log()[-3000:]}"
        time.sleep(0.05)


class Traffic:
    """A thread issuing chat requests in a loop, on a keep-alive session and on fresh connections
    in turn, keeping every answer that was not a 200."""

    def __init__(self, gateway: GatewayProcess, endpoint: str) -> None:
        self.gateway, self.endpoint = gateway, endpoint
        self.done = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(30)

    def _run(self) -> None:
        session = requests.Session()
        n = 0
        while not self.done.is_set():
            n += 1
            try:
                reply = _chat(self.gateway, self.endpoint, session if n % 2 else None)
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
                continue
            if reply.status_code == 200:
                self.ok += 1
            else:
                self.failures.append(f"{reply.status_code} {reply.text[:200]}")


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _require_redis() -> None:
    problem = _redis_reachable(REDIS_URL)
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required when CI=true but unreachable at {REDIS_URL}: {problem}")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {problem}")


# -- reload, one process ---------------------------------------------------------------------------


def test_sighup_reloads_under_traffic_without_a_failed_request(fake_upstream):
    fake = fake_upstream.url
    gateway = start_gateway(_config(fake, {"steady": "steady", "slow": "slow-1500"}))
    try:
        pool = ThreadPoolExecutor(1)
        with Traffic(gateway, "steady") as traffic:
            time.sleep(0.3)
            in_flight = pool.submit(_chat, gateway, "slow")  # under way across the reload that removes its endpoint
            time.sleep(0.3)
            _rewrite(gateway, _config(fake, {"steady": "steady", "added": "added"}, recording={"durable": True}))
            _hangup_and_wait(gateway, "configuration reloaded")
            for n in range(3):  # more reloads while the traffic goes on
                _rewrite(gateway, _config(fake, {"steady": "steady", "added": "added", f"extra-{n}": "x"}))
                _hangup_and_wait(gateway, "configuration reloaded")
            time.sleep(0.3)
        assert traffic.failures == [] and traffic.ok > 20, (traffic.ok, traffic.failures[:5])
        assert in_flight.result(timeout=30).status_code == 200
        assert _chat(gateway, "added").status_code == 200
        assert _chat(gateway, "slow").status_code == 404  # removed for new requests
        log = gateway.log()
        assert "recording.durable changed in the file but take effect only at a restart" in log

        # A bad file: refused on one log line, and the running configuration stays.
        (gateway.data_dir / "aigw.yaml").write_text("endpoints: [{name: x, destinations: [{provider: nope, model: m}]}]")
        _hangup_and_wait(gateway, "reload refused")
        refusal = next(line for line in gateway.log().splitlines() if "reload refused" in line)
        assert "configuration error" in refusal and "unknown provider 'nope'" in refusal
        assert _chat(gateway, "added").status_code == 200
        assert gateway.process.poll() is None
    finally:
        cleanup(gateway)


def test_reload_keeps_the_counts_of_a_rate_limit(fake_upstream):
    fake = fake_upstream.url
    gateway = start_gateway(_config(fake, {"limited": "m"}, {"limited": 3}))
    try:
        assert [_chat(gateway, "limited").status_code for _ in range(3)] == [200, 200, 200]
        _rewrite(gateway, _config(fake, {"limited": "m", "other": "m"}, {"limited": 3}))
        _hangup_and_wait(gateway, "configuration reloaded")
        assert _chat(gateway, "other").status_code == 200
        assert _chat(gateway, "limited").status_code == 429  # the reload did not hand out a fresh minute
    finally:
        cleanup(gateway)


# -- several processes -------------------------------------------------------------------------------


def test_workers_with_in_process_limits_refuse_to_start(tmp_path, fake_upstream):
    config = tmp_path / "aigw.yaml"
    config.write_text(_config(fake_upstream.url, {"limited": "m"}, {"limited": 5}, server={"workers": 2}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")} | {"AIGW_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([AIGW, "serve", "--config", str(config), "--port", "1"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot serve with 2 workers" in result.stderr and "redis_url" in result.stderr and "2 times" in result.stderr
    assert result.stdout == ""  # refused before any admin token was created


def test_workers_share_a_redis_limit_exactly(fake_upstream):
    _require_redis()
    limit, extra = 8, 8
    endpoint = f"shared-{secrets.token_hex(4)}"  # this run's own Redis keys
    config = _config(fake_upstream.url, {endpoint: "slow-300"}, {endpoint: limit})
    gateway = start_gateway(config, {"AIGW_REDIS_URL": REDIS_URL}, args=["--workers", "2"])
    try:
        assert len(_children(gateway.process.pid)) == 2
        with ThreadPoolExecutor(limit + extra) as pool:  # fresh connections at once: both workers take some
            statuses = list(pool.map(lambda _: _chat(gateway, endpoint).status_code, range(limit + extra)))
        assert sorted(statuses) == [200] * limit + [429] * extra
        # Each worker's share, from /metrics (which answers for both): strictly between none and all.
        per_worker = _metric_when(gateway, "aigw_worker_requests_total", lambda counts: sum(counts.values()) == limit + extra)
        assert len(per_worker) == 2 and all(0 < n < limit + extra for n in per_worker.values()), per_worker
    finally:
        cleanup(gateway)


def _metric(gateway: GatewayProcess, name: str) -> dict[str, float]:
    """Every sample of `name` in one scrape of /metrics: labels -> value."""
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name) :].rpartition(" ")
            samples[labels] = float(value)
    return samples


def _metric_when(gateway: GatewayProcess, name: str, ready: Any, timeout: float = 10.0) -> dict[str, float]:
    """`_metric` once `ready(samples)` holds (workers publish their counts every second)."""
    deadline = time.monotonic() + timeout
    while not ready(samples := _metric(gateway, name)):
        assert time.monotonic() < deadline, f"{name} never got there: {samples}"
        time.sleep(0.2)
    return samples


def test_metrics_count_every_worker_and_survive_a_killed_one(fake_upstream):
    """Whichever worker a scrape reaches, /metrics has the requests of all, and a killed worker's
    counts stay in (counters never go down)."""
    gateway = start_gateway(_config(fake_upstream.url, {"chat": "m"}), args=["--workers", "2"])
    try:
        with ThreadPoolExecutor(8) as pool:  # fresh connections at once: both workers take some
            assert all(s == 200 for s in pool.map(lambda _: _chat(gateway, "chat").status_code, range(24)))
        total = lambda samples: sum(samples.values())  # noqa: E731
        per_worker = _metric_when(gateway, "aigw_worker_requests_total", lambda s: total(s) == 24)
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
        for _ in range(10):  # every scrape, whichever worker answers it
            assert total(_metric(gateway, "aigw_requests_total")) == 24

        victim = min(_children(gateway.process.pid))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while victim in (now := _children(gateway.process.pid)) or len(now) < 2:
            assert time.monotonic() < deadline, f"no worker restarted: {now}\n{gateway.log()[-2000:]}"
            time.sleep(0.05)
        for _ in range(10):
            assert total(_metric(gateway, "aigw_requests_total")) == 24, gateway.log()[-2000:]
        assert all(_chat(gateway, "chat").status_code == 200 for _ in range(6))
        _metric_when(gateway, "aigw_requests_total", lambda s: total(s) == 30)
        assert total(_metric(gateway, "aigw_worker_requests_total")) == 30
    finally:
        cleanup(gateway)


def test_a_killed_worker_is_restarted_and_sigterm_ends_them_all(fake_upstream):
    gateway = start_gateway(_config(fake_upstream.url, {"chat": "m", "slow": "slow-1500"}), args=["--workers", "2"])
    try:
        first = _children(gateway.process.pid)
        assert len(first) == 2
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while (now := _children(gateway.process.pid)) == first or len(now) < 2:
            assert time.monotonic() < deadline, f"no worker restarted: {now}\n{gateway.log()[-2000:]}"
            time.sleep(0.05)
        assert victim not in now and len(now) == 2
        assert "worker 0 (pid" in gateway.log() or "worker 1 (pid" in gateway.log()
        assert "exited with status 137" in gateway.log()
        assert all(_chat(gateway, "chat").status_code == 200 for _ in range(10))

        # SIGTERM: a request under way finishes, then every process ends, with status 0.
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(_chat, gateway, "slow")
            time.sleep(0.5)
            gateway.process.send_signal(signal.SIGTERM)
            assert in_flight.result(timeout=30).status_code == 200
        assert gateway.process.wait(timeout=20) == 0
        # Both workers wrote to the one SQLite file: every request is recorded, none twice.
        assert len(gateway.usage_records()) == 11
        deadline = time.monotonic() + 5
        while any(_state(pid) not in ("gone", "Z") for pid in now):
            assert time.monotonic() < deadline, "a worker outlived the supervisor"
            time.sleep(0.05)
    finally:
        cleanup(gateway)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]  # Z: a zombie, as good as gone
    except OSError:
        return "gone"


def test_reload_with_workers_under_traffic(fake_upstream):
    fake = fake_upstream.url
    gateway = start_gateway(_config(fake, {"steady": "steady"}), args=["--workers", "2"])
    try:
        with Traffic(gateway, "steady") as traffic:
            time.sleep(0.3)
            _rewrite(gateway, _config(fake, {"steady": "steady", "added": "added"}))
            _hangup_and_wait(gateway, "configuration reloaded", count=2)  # one line per worker
            time.sleep(0.3)
        assert traffic.failures == [] and traffic.ok > 10, (traffic.ok, traffic.failures[:5])
        # Fresh connections land on either worker: both serve the new endpoint.
        assert [_chat(gateway, "added").status_code for _ in range(12)] == [200] * 12

        # A bad file: the supervisor refuses it once, the workers keep serving the last good one.
        (gateway.data_dir / "aigw.yaml").write_text("endpoints: [")
        _hangup_and_wait(gateway, "reload refused")
        time.sleep(0.5)
        assert gateway.log().count("reload refused") == 1  # by the supervisor: the workers are not bothered
        # Limits without Redis cannot be counted across workers: refused too.
        _rewrite(gateway, _config(fake, {"steady": "steady", "added": "added"}, {"added": 5}))
        _hangup_and_wait(gateway, "reload refused: rate limits are configured")
        # A worker started after that (the killed one's successor) runs the last good configuration too.
        os.kill(min(_children(gateway.process.pid)), signal.SIGKILL)
        time.sleep(2.0)
        assert [_chat(gateway, "added").status_code for _ in range(12)] == [200] * 12
        assert "exited with status 137" in gateway.log()
    finally:
        cleanup(gateway)


def test_a_stop_signal_delivered_twice_at_once_still_drains(fake_upstream):
    """A process group's stop (Ctrl-C, systemd) reaches a worker and its supervisor, which forwards
    it: the worker must not take the second copy for an operator hurrying the shutdown."""
    gateway = start_gateway(_config(fake_upstream.url, {"slow": "slow-1500"}))
    try:
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(_chat, gateway, "slow")
            time.sleep(0.5)
            gateway.process.send_signal(signal.SIGINT)
            time.sleep(0.1)
            gateway.process.send_signal(signal.SIGTERM)
            assert in_flight.result(timeout=30).status_code == 200
        assert gateway.process.wait(timeout=20) == 0
    finally:
        cleanup(gateway)


def test_config_check_refuses_workers_with_in_process_limits(tmp_path, fake_upstream):
    config = tmp_path / "aigw.yaml"
    config.write_text(_config(fake_upstream.url, {"limited": "m"}, {"limited": 5}, server={"workers": 3}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    result = subprocess.run([AIGW, "config", "check", str(config)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "server.workers: rate limits are configured" in result.stderr and "3 times" in result.stderr
    ok = subprocess.run([AIGW, "config", "check", str(config)], env=env | {"AIGW_REDIS_URL": REDIS_URL}, capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr


def test_durable_records_of_every_worker_survive_kill_9():
    """With `recording.durable`, each worker writes its journal to spill files in the one
    `<data_dir>/spill/`; after every process is killed, one restarted gateway stores them all."""
    from tests.test_durable_records import REQUESTS, _records_after_restart

    config = yaml.safe_dump({"recording": {"durable": True}})
    gateway = start_gateway(config, args=["--workers", "2"])
    try:
        run = secrets.token_hex(4)
        headers = {"authorization": f"Bearer {gateway.admin_token}", "x-aigw-request-tags": f'{{"run": "{run}"}}'}
        body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}

        def one(_: int) -> int:
            return requests.post(f"{gateway.url}/mlflow/v1/chat/completions", json=body, headers=headers, timeout=20).status_code

        with ThreadPoolExecutor(16) as pool:
            assert list(pool.map(one, range(REQUESTS))) == [200] * REQUESTS
        per_worker = _metric_when(gateway, "aigw_worker_requests_total", lambda counts: sum(counts.values()) == REQUESTS)
        assert all(0 < n < REQUESTS for n in per_worker.values()), per_worker  # both workers answered some
        for pid in _children(gateway.process.pid):  # workers first: a dying parent would stop them gently
            os.kill(pid, signal.SIGKILL)
        gateway.process.kill()
        gateway.process.wait()
        assert _records_after_restart(gateway, config, run, REQUESTS, wait=15) == REQUESTS
    finally:
        cleanup(gateway)
