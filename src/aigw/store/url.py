"""Where the store lives: an explicit database URL, or a SQLite file in the data directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url

SQLITE_FILE_NAME = "aigw.db"

# Hosting platforms hand out `postgres://` and `postgresql://` URLs; SQLAlchemy would pick psycopg2
# (not installed) for the second and reject the first. We ship psycopg 3, so both mean that.
_POSTGRES_ALIASES = frozenset({"postgres", "postgresql"})


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`AIGW_DATA_DIR`, else `~/.aigw`."""
    env = os.environ if environ is None else environ
    return Path(env.get("AIGW_DATA_DIR") or Path.home() / ".aigw").expanduser()


def normalize_database_url(url: str) -> str:
    """Rewrite PostgreSQL URLs without a driver to use psycopg 3; leave everything else as given."""
    parsed = make_url(url)
    if parsed.drivername in _POSTGRES_ALIASES:
        parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed.render_as_string(hide_password=False)
    return url


def resolve_database_url(database_url: str | None, data_dir: Path) -> str:
    """The URL to open: `database_url` when given, else `<data_dir>/aigw.db` (directory created)."""
    if database_url:
        return normalize_database_url(database_url)
    directory = Path(data_dir).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / SQLITE_FILE_NAME}"
