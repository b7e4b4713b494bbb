"""The `aigw` command line: `serve`, `tokens`, `users`, `service-principals`, `groups`, `grants`,
`--version`."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from aigw.config import ConfigError, Settings, load_settings
from aigw.logs import LEVELS
from aigw.reload import ReloadSource, unshared_limits

if TYPE_CHECKING:
    from aigw.http.workers import WorkerStart


def _load(config: Path | None, *, require_env: bool = True) -> Settings:
    try:
        return load_settings(config, require_env=require_env)
    except ConfigError as exc:
        click.echo(f"aigw: configuration error: {exc}", err=True)
        sys.exit(2)


def _open_store(settings: Settings):  # -> Store; imported late so `aigw --version` stays fast
    from sqlalchemy.exc import SQLAlchemyError

    from aigw.store import Store, resolve_database_url
    from aigw.store.errors import driver_message

    try:
        return Store.open(resolve_database_url(settings.database_url, settings.data_path()))
    except OSError as exc:  # the data directory cannot be created or written
        where = exc.filename or settings.data_path()
        raise click.ClickException(f"data directory {where}: {exc.strerror or exc}") from None
    except SQLAlchemyError as exc:
        raise click.ClickException(f"cannot open the database: {driver_message(exc) or type(exc).__name__}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version("aigw"), prog_name="aigw")
def main() -> None:
    """aigw: one endpoint in front of every model provider, with governance on every call."""


@main.command()
@click.option("--config", "config", type=click.Path(path_type=Path), envvar="AIGW_CONFIG", help="YAML configuration file (env AIGW_CONFIG).")
@click.option("--host", help="Listen address (default 127.0.0.1; env AIGW_HOST).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen port (default 8080; env AIGW_PORT).")
@click.option("--tls-cert", type=click.Path(path_type=Path), help="PEM certificate (chain) for HTTPS (env AIGW_TLS_CERT).")
@click.option("--tls-key", type=click.Path(path_type=Path), help="PEM private key for HTTPS (env AIGW_TLS_KEY).")
@click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), envvar="AIGW_LOG_LEVEL", help="Log level (default info; env AIGW_LOG_LEVEL).")
@click.option("--log-format", type=click.Choice(["text", "json"]), envvar="AIGW_LOG_FORMAT", help="Log lines as text or JSON (default text; env AIGW_LOG_FORMAT).")
@click.option("--access-log/--no-access-log", default=None, help="A log line per request (default on).")
@click.option("--workers", type=click.IntRange(1, 512), help="Processes serving the port (default 1, or server.workers).")
def serve(
    config: Path | None, host: str | None, port: int | None, tls_cert: Path | None, tls_key: Path | None,
    log_level: str | None, log_format: str | None, access_log: bool | None, workers: int | None,
) -> None:  # fmt: skip
    """Start the gateway. SIGHUP reloads the configuration file; SIGTERM or SIGINT stops it."""
    from aigw import logs
    from aigw.app import Gateway
    from aigw.http import server as http_server
    from aigw.http.tls import TLSError, server_tls_context
    from aigw.store import ensure_admin_token

    settings = _load(config)
    logging_config = settings.logging
    logs.configure(
        (log_level or logging_config.level).lower(), log_format or logging_config.format,
        logging_config.access_log if access_log is None else access_log,
    )  # fmt: skip
    server = settings.server
    host, port = host or server.host, port or server.port
    cert, key = tls_cert or server.tls_cert, tls_key or server.tls_key
    if (cert is None) != (key is None):
        raise click.UsageError("give both --tls-cert and --tls-key (or server.tls_cert and server.tls_key)")
    try:
        tls = server_tls_context(cert, key) if cert is not None and key is not None else None
    except TLSError as exc:
        raise click.ClickException(str(exc)) from None
    workers = workers or server.workers
    if problem := unshared_limits(settings, workers):
        raise click.ClickException(f"cannot serve with {workers} workers: {problem}")
    store = _open_store(settings)
    admin_token = ensure_admin_token(store)
    if admin_token:
        logging.getLogger("aigw").warning("created the first admin token, printed on stdout: it is shown only this once; keep it safe")
        click.echo(admin_token)

    store_description = store.describe()
    reload_from = ReloadSource(lambda: load_settings(config), workers, log_level=log_level is None)
    limits = {
        "graceful_timeout": server.graceful_timeout, "ssl_context": tls, "max_connections": server.max_connections,
        "request_body_read_timeout": server.request_body_read_timeout, "request_body_timeout": server.request_body_timeout,
    }  # fmt: skip

    def listening() -> None:
        scheme = "https" if tls is not None else "http"
        logs.start_summary(settings, f"{scheme}://{host}:{port}", store_description)

    if workers == 1:
        http_server.run(Gateway(settings, store, reload_from=reload_from), host, port, on_listening=listening, **limits)
        return
    from aigw.http.workers import WorkerStart, bind_sockets, supervise
    from aigw.recording.shared_metrics import fold_ended
    from aigw.reload import effective, one_line

    store.close()  # each worker opens its own; nothing but the sockets cross the fork
    try:
        sockets = bind_sockets(host, port, workers)
    except OSError as exc:
        logging.getLogger("aigw").error("cannot listen on %s:%d: %s", host, port, exc)
        sys.exit(1)
    listening()
    logging.getLogger("aigw").info("serving with %d worker processes", workers)
    current = [settings]  # the configuration a worker starts with: the last one a SIGHUP read well

    def reload() -> bool:
        try:
            settings, _ = effective(current[0], reload_from.load())
        except ConfigError as exc:
            logging.getLogger("aigw").error("reload refused: configuration error: %s; the running configuration stays", one_line(exc))
            return False
        if problem := unshared_limits(settings, workers):
            logging.getLogger("aigw").error("reload refused: %s; the running configuration stays", problem)
            return False
        current[0] = settings
        return True

    metrics = Path(tempfile.mkdtemp(prefix="aigw-metrics-"))  # where workers publish their counts

    def serve_worker(start: WorkerStart) -> None:
        _serve_worker(start, current[0], reload_from, host, port, limits, metrics)

    try:
        status = supervise(sockets, serve_worker, reload, ended=lambda pid: fold_ended(metrics, pid))
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
    sys.exit(status)


def _serve_worker(
    start: WorkerStart, settings: Settings, reload_from: ReloadSource, host: str, port: int, limits: dict[str, Any],
    metrics: Path,
) -> None:  # fmt: skip
    """One worker process of `serve --workers N` (see aigw.http.workers): its own store connection,
    record writer and event loop, on the socket the supervisor bound for it."""
    import asyncio

    from aigw.app import Gateway
    from aigw.http import server as http_server

    gateway = Gateway(settings, _open_store(settings), reload_from=reload_from)
    gateway.share_metrics(metrics, start.index)
    pending: list[asyncio.Task] = []

    def listening() -> None:
        if start.hangup():  # a SIGHUP came while this worker was starting
            pending.append(asyncio.get_running_loop().create_task(gateway.reload()))

    http_server.run(gateway, host, port, sock=start.sock, on_listening=listening, **limits)


def _register_admin_commands() -> None:
    from aigw.admin.access_cli import make_grants_group, make_groups_group, make_principal_group
    from aigw.admin.tokens_cli import make_tokens_group

    main.add_command(make_tokens_group(open_store))
    main.add_command(make_principal_group(open_store, "user"))
    main.add_command(make_principal_group(open_store, "service_principal"))
    main.add_command(make_groups_group(open_store))
    main.add_command(make_grants_group(open_store, lambda: _endpoint_names(_load(_config_from_env(), require_env=False))))


def open_store():  # -> Store
    """The store of the admin commands, found as `serve` finds it: AIGW_CONFIG, AIGW_DATABASE_URL,
    AIGW_DATA_DIR. They never call a provider, so provider keys named in the file need not be set."""
    return _open_store(_load(_config_from_env(), require_env=False))


def _endpoint_names(settings: Settings) -> set[str]:
    from aigw.routing import DEMO_ENDPOINT

    names = {e.name for e in settings.endpoints}
    return names | {DEMO_ENDPOINT.name} if settings.demo_endpoint else names


def _config_from_env() -> Path | None:
    value = os.environ.get("AIGW_CONFIG")
    return Path(value) if value else None


def _register_usage() -> None:
    from aigw.admin.purge_cli import make_purge_command
    from aigw.admin.usage_cli import make_usage_group

    main.add_command(make_usage_group(open_store))
    main.add_command(make_purge_command(open_store))


@main.group("config")
def config_group() -> None:
    """Check a configuration file."""


@config_group.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE as `serve` would (environment variables included), without starting anything."""
    from aigw.http.tls import TLSError, server_tls_context

    settings = _load(file)
    if problem := unshared_limits(settings, settings.server.workers):
        click.echo(f"aigw: configuration error: {file}: server.workers: {problem}", err=True)
        sys.exit(2)
    if settings.server.tls_cert and settings.server.tls_key:
        try:
            server_tls_context(settings.server.tls_cert, settings.server.tls_key)
        except TLSError as exc:
            click.echo(f"aigw: configuration error: {file}: server.{exc}", err=True)
            sys.exit(2)
    endpoints = [e.name for e in settings.endpoints] + (["demo"] if settings.demo_endpoint else [])
    store = settings.database_url and "database_url set" or f"SQLite in {settings.data_path()}"
    click.echo(f"{file}: ok ({len(endpoints)} endpoints: {', '.join(endpoints) or 'none'}; store: {store})")


_register_admin_commands()
_register_usage()
