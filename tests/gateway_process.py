"""Start a real `aigw serve` process for end-to-end tests, the way a user would."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

AIGW = str(Path(sys.executable).parent / "aigw")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class GatewayProcess:
    url: str
    admin_token: str
    process: subprocess.Popen
    data_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        """Run an `aigw` command against this gateway's store."""
        return subprocess.run([AIGW, *args], env=self.env, capture_output=True, text=True, timeout=60)

    def log(self) -> str:
        return (self.data_dir / "gateway.log").read_text()

    def usage_records(self) -> list[dict]:
        """Every usage record in this gateway's database (its SQLite file, or AIGW_DATABASE_URL),
        oldest first, `tags` and `attempts` decoded: what an operator reads with SQL."""
        from aigw.store import resolve_database_url
        from aigw.store.engine import create_store_engine
        from aigw.store.recording import RecordingStore

        engine = create_store_engine(resolve_database_url(self.env.get("AIGW_DATABASE_URL"), self.data_dir))
        try:
            return [row for batch in RecordingStore(engine).iter_usage() for row in batch]
        finally:
            engine.dispose()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_gateway(
    config: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    data_dir: Path | None = None,
    tls_ca: Path | None = None,
    args: list[str] | None = None,
) -> GatewayProcess:
    """A gateway on a fresh data directory, or on `data_dir` again (a restart: no new admin token
    is printed, the caller keeps the first one). With `tls_ca` it serves HTTPS (its certificate
    set by the caller's env or config), checked against that CA. `args`: more `aigw serve` options."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="aigw-test-"))
    port = free_port()
    # A developer's own AIGW_* variables must not leak into the gateway under test.
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AIGW_")}
    full_env.update({"AIGW_DATA_DIR": str(data_dir), "AIGW_PORT": str(port), **(env or {})})
    command = [AIGW, "serve", "--host", "127.0.0.1", *(args or [])]
    if config is not None:
        config_path = data_dir / "aigw.yaml"
        config_path.write_text(config)
        command += ["--config", str(config_path)]
        full_env["AIGW_CONFIG"] = str(config_path)
    # stdout to a file: it holds the admin token on a first start, and nothing otherwise.
    with open(data_dir / "gateway.log", "ab") as log, open(data_dir / "stdout.txt", "ab") as out:
        process = subprocess.Popen(command, env=full_env, stdout=out, stderr=log)
    url = f"{'https' if tls_ca else 'http'}://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else None
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"aigw exited with {process.returncode}:\n{(data_dir / 'gateway.log').read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1, context=context):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"aigw did not start:\n{(data_dir / 'gateway.log').read_text()}") from None
            time.sleep(0.05)
    admin_token = (data_dir / "stdout.txt").read_text().strip()
    return GatewayProcess(url=url, admin_token=admin_token, process=process, data_dir=data_dir, env=full_env)


def cleanup(gateway: GatewayProcess) -> None:
    gateway.stop()
    shutil.rmtree(gateway.data_dir, ignore_errors=True)
