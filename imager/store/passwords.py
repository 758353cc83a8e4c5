"""Passwords, sign-in tokens and the per-account lock, shared by the station's
accounts (imager.registry.accounts) and the portal's (imager.portal.accounts).

Passwords are kept as argon2id hashes (argon2-cffi's defaults, RFC 9106's second
recommended parameters). A token given to a browser (a session's cookie, an
invitation's link) is kept only as its SHA-256 (`token_key`): a copy of the
database opens nothing. An account whose password is wrong LOCK_AFTER times in a
row is locked for LOCK_MINUTES.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from imager.errors import UsageError

MIN_PASSWORD = 10
MAX_PASSWORD = 1024          # argon2 hashes anything; a megabyte "password" is a nuisance
LOCK_AFTER = 5
LOCK_MINUTES = 15
WRONG = "identifiant ou mot de passe incorrect / wrong login or password"
LOCKED = (f"compte bloqué après {LOCK_AFTER} essais / account locked after {LOCK_AFTER} "
          f"wrong passwords: try again in {LOCK_MINUTES} minutes, or ask a coordinator")

_hasher = PasswordHasher()


def new_token(size: int = 32) -> str:
    """A random token for a URL or a cookie."""
    return secrets.token_urlsafe(size)


def token_key(token: str) -> str:
    """What is stored of a token: its SHA-256 (hex)."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> None:
    """UsageError unless `password` is long enough (and not absurdly long)."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"mot de passe trop court / password too short: at least "
                         f"{MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UsageError(f"mot de passe trop long / password too long: at most "
                         f"{MAX_PASSWORD} characters")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def verified(hashed: str | None, secret: str) -> bool:
    """Whether `secret` is the one `hashed` was made from (False for no hash)."""
    if not hashed or len(secret) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(hashed, secret)
    except (VerificationError, InvalidHashError):
        return False


def try_password(account: Any, password: str, *, usable: bool, now: datetime) -> str | None:
    """None when `password` opens `account` (an object with `password_hash`,
    `failed_logins`, `locked_until`; None for an unknown login), else why not (LOCKED,
    or WRONG: the same for an unknown login and a wrong password). A wrong password is
    counted on the account and locks it at LOCK_AFTER; a right one resets the count
    and upgrades an old hash. `usable`: the account may sign in (active, set up)."""
    if account is not None and account.locked_until is not None and account.locked_until > now:
        return LOCKED
    if account is None or not usable or not verified(account.password_hash, password):
        if account is not None:
            account.failed_logins += 1
            if account.failed_logins >= LOCK_AFTER:
                account.locked_until = now + timedelta(minutes=LOCK_MINUTES)
                account.failed_logins = 0
        return WRONG
    account.failed_logins, account.locked_until = 0, None
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    return None
