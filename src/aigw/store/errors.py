"""Store failures the caller can act on (as opposed to a broken database, which stays a SQLAlchemy error)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class for expected store failures."""


class AlreadyExists(StoreError):
    """A unique name is taken: a principal, a group, or an active token with the same name."""


class NotFound(StoreError):
    """The principal, group or grant named does not exist."""


def driver_message(exc: BaseException) -> str:
    """The first line of the database driver's own message for a failure: SQLAlchemy wraps it with
    the statement and a background link, which say nothing to an operator."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [""])[0]
