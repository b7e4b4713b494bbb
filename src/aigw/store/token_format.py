"""The token format `aigw_<id>_<secret>`: generation, parsing and hashing.

The id is public (it names the token in listings and is the cache key); only the secret authenticates,
and only its SHA-256 is stored. A fast hash is right here: the secret has 256 bits of entropy, so there
is nothing for a slow password hash to protect against, and it runs on every request.
"""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "aigw_"
TOKEN_ID_LENGTH = 12
TOKEN_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # lowercase base32: 60 random bits per id
SECRET_BYTES = 32
_SECRET_MIN_CHARS = 43  # len(token_urlsafe(32)); shorter strings cannot be ours
_ID_START = len(TOKEN_PREFIX)
_ID_END = _ID_START + TOKEN_ID_LENGTH
_MIN_LENGTH = _ID_END + 1 + _SECRET_MIN_CHARS
_ID_CHARS = frozenset(TOKEN_ID_ALPHABET)


def new_token() -> tuple[str, str, str]:
    """A fresh `(token_id, secret, plaintext)`."""
    token_id = "".join(secrets.choice(TOKEN_ID_ALPHABET) for _ in range(TOKEN_ID_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return token_id, secret, f"{TOKEN_PREFIX}{token_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """`(token_id, secret)`, or None when the string is not shaped like one of our tokens.

    Split by position, not by "_": the url-safe secret may itself contain underscores."""
    if len(token) < _MIN_LENGTH or not token.startswith(TOKEN_PREFIX) or token[_ID_END] != "_":
        return None
    return token[_ID_START:_ID_END], token[_ID_END + 1 :]


def is_token_id(value: str) -> bool:
    return len(value) == TOKEN_ID_LENGTH and _ID_CHARS.issuperset(value)


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def hash_secret(secret: str) -> str:
    """The stored form of a secret: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()
