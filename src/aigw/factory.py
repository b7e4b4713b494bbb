"""The gateway as an ASGI application for another server to host: `create_app()` builds what
`aigw serve` runs (configuration from AIGW_CONFIG, logs, the store, the first admin token), so
granian or uvicorn serve the same app as aigw's own server:

    AIGW_CONFIG=bench/aigw-bench.yaml granian --interface asgi --loop uvloop --factory aigw.factory:create_app
    AIGW_CONFIG=bench/aigw-bench.yaml uvicorn --factory aigw.factory:create_app --loop uvloop --http httptools

It exists for the server benchmark (bench/servers.sh); `aigw serve` remains the supported way to
run the gateway. Under another server, SIGHUP reload and `--workers` are that server's business
(neither reloads the configuration), and TLS, limits and timeouts are its options, not server.*.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aigw.app import Gateway
from aigw.config import load_settings
from aigw.http.process import raise_fd_limit, tune_gc


def create_app() -> Gateway:
    from aigw import logs
    from aigw.store import Store, ensure_admin_token, resolve_database_url

    config = os.environ.get("AIGW_CONFIG")
    settings = load_settings(Path(config) if config else None)
    logs.configure(settings.logging.level.lower(), settings.logging.format, settings.logging.access_log)
    raise_fd_limit()
    store = Store.open(resolve_database_url(settings.database_url, settings.data_path()))
    if admin_token := ensure_admin_token(store):
        logging.getLogger("aigw").warning("created the first admin token, printed on stdout: it is shown only this once")
        print(admin_token, flush=True)
    gateway = Gateway(settings, store)
    startup = gateway.startup

    async def startup_then_tune() -> None:
        # What aigw's own server does once the app has started (aigw.http.process.tune_gc: +23 % req/s
        # there); without it a comparison would measure the collector's settings, not the servers.
        await startup()
        tune_gc()

    gateway.startup = startup_then_tune  # type: ignore[method-assign]
    return gateway
