"""Store failures the caller can act on (as opposed to a broken database, which stays a SQLAlchemy error)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class for expected store failures."""


class AlreadyExists(StoreError):
    """A unique name is taken: a principal, a group, or an active token with the same name."""


class NotFound(StoreError):
    """The principal, group or grant named does not exist."""
