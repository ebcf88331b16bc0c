"""Who may do what, decided without I/O: roles, scopes, slot patterns, password and token hashes.

Scopes: `read`, `deploy:<slot pattern>` (implies read), `admin` (everything). A slot pattern is a
slot name or a prefix ending in `*` (`docs-*`, `*`): no other wildcard, so whether one pattern is
inside another (a token's scope inside its user's) is a prefix test, never a guess.

Passwords: hashlib.scrypt (memory-hard, standard library) with n=2**14, r=8, p=1 (16 MiB, about
50 ms): a stolen table costs an attacker that much per guess. API tokens are 256 random bits, so
no guess list helps: one sha256 is as strong as scrypt for them, and it lets a request find its
token by an index lookup instead of hashing once per stored token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drophost.errors import ForbiddenError, ValidationError

ROLES = ("admin", "deployer", "viewer")
NEEDS = ("read", "deploy", "admin")
TOKEN_PREFIX = "dht_"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_USER_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_PATTERN = re.compile(r"(?:[a-z0-9][a-z0-9-]{0,62})?\*?")


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (signed in, or through one of their tokens) or the bootstrap token."""

    user: str
    role: str
    scopes: frozenset[str]
    token_id: int | None = None

    @property
    def actor(self) -> str:
        return f"{self.user} (token {self.token_id})" if self.token_id is not None else self.user


BOOTSTRAP = Principal(user="bootstrap", role="admin", scopes=frozenset({"admin"}))


# -- names, patterns and scopes ---------------------------------------------------------------------
def check_user_name(name: object) -> str:
    if not isinstance(name, str) or not _USER_NAME.fullmatch(name) or name == BOOTSTRAP.user:
        raise ValidationError("name must be 1-64 of a-z 0-9 . _ - starting with a letter or digit", field="name")
    return name


def check_role(role: object) -> str:
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    assert isinstance(role, str)
    return role


def check_pattern(pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern or not _PATTERN.fullmatch(pattern):
        raise ValidationError('a slot pattern is a slot name or a prefix ending in * (like "docs-*")', field="slots")
    return pattern


def matches(pattern: str, slot: str) -> bool:
    """`docs-*` matches docs-a and docs-, never docs2; a pattern without * is the slot itself."""
    if pattern.endswith("*"):
        return slot.startswith(pattern[:-1])
    return slot == pattern


def covers(outer: str, inner: str) -> bool:
    """Whether every slot `inner` matches is one `outer` matches."""
    if outer.endswith("*"):
        return inner.startswith(outer[:-1])
    return inner == outer


def role_scopes(role: str, slots: Iterable[str]) -> frozenset[str]:
    if role == "admin":
        return frozenset({"admin"})
    if role == "deployer":
        return frozenset({"read", *(f"deploy:{p}" for p in slots)})
    return frozenset({"read"})


def check_scopes(requested: object, allowed: frozenset[str]) -> frozenset[str]:
    """The scopes a new token asks for, each within what its user has (else 403 names the first one)."""
    if not isinstance(requested, list) or not requested or not all(isinstance(s, str) for s in requested):
        raise ValidationError('scopes must be a list like ["read", "deploy:docs-*"]', field="scopes")
    for scope in requested:
        if scope not in ("read", "admin") and not scope.startswith("deploy:"):
            raise ValidationError(f"unknown scope {scope[:40]!r}; use read, deploy:<slot pattern> or admin")
        if scope.startswith("deploy:"):
            check_pattern(scope[len("deploy:") :])
        if not scope_within(scope, allowed):
            raise ForbiddenError(f"scope {scope} is wider than the user's own rights", field="scopes")
    return frozenset(requested)


def scope_within(scope: str, allowed: frozenset[str]) -> bool:
    if "admin" in allowed:
        return True
    if scope == "read":
        return "read" in allowed or any(a.startswith("deploy:") for a in allowed)
    if scope.startswith("deploy:"):
        inner = scope[len("deploy:") :]
        return any(covers(a[len("deploy:") :], inner) for a in allowed if a.startswith("deploy:"))
    return False


def permits(scopes: frozenset[str], need: str, slot: str | None = None) -> bool:
    """Whether scopes grant `need` (read, deploy, admin); deploy with a slot: on that very slot."""
    if "admin" in scopes:
        return True
    deploys = [s[len("deploy:") :] for s in scopes if s.startswith("deploy:")]
    if need == "read":
        return "read" in scopes or bool(deploys)
    if need == "deploy":
        return any(matches(p, slot) for p in deploys) if slot is not None else bool(deploys)
    return False


def parse_expiry(raw: object, *, maximum_days: int = 3650) -> int | None:
    """ "90d", "12h", "30m" or a number of days -> seconds; None or "" -> never."""
    if raw is None or raw == "":
        return None
    text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    found = re.fullmatch(r"([1-9][0-9]{0,5})([mhd]?)", text) if isinstance(text, str) else None
    if found is None:
        raise ValidationError('expires must be like "90d", "12h" or "30m"', field="expires")
    seconds = int(found.group(1)) * {"m": 60, "h": 3600, "d": 86400, "": 86400}[found.group(2)]
    if seconds > maximum_days * 86400:
        raise ValidationError(f"expires is at most {maximum_days} days", field="expires")
    return seconds


# -- secrets ----------------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    if len(password) < 8 or len(password) > 1024:
        raise ValidationError("a password has 8 to 1024 characters", field="password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


# Compared against when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${'00' * 16}${'00' * 32}"


def verify_password(password: str, stored: str | None) -> bool:
    try:
        kind, n, r, p, salt, digest = (stored or _DUMMY_HASH).split("$")
        computed = hashlib.scrypt(
            password.encode()[:1024], salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed, bytes.fromhex(digest)) and kind == "scrypt" and stored is not None


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


# -- sign-in rate limit -----------------------------------------------------------------------------
class FailureLimiter:
    """At most `limit` failures per key (a client address, a user name) within `window` seconds."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_for(self, keys: Iterable[str]) -> float:
        """Seconds until each key may try again (0: now)."""
        now = self.clock()
        longest = 0.0
        with self._lock:
            for key in keys:
                times = self._failures.get(key)
                while times and times[0] <= now - self.window:
                    times.popleft()
                if times is not None and not times:
                    del self._failures[key]
                elif times is not None and len(times) >= self.limit:
                    longest = max(longest, times[0] + self.window - now)
        return longest

    def failed(self, keys: Iterable[str]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._failures) > 100_000:  # a flood of addresses must not grow memory forever
                self._failures.clear()
            for key in keys:
                self._failures.setdefault(key, deque(maxlen=self.limit)).append(now)
