"""E-mail recipient lists (alerts-and-access.md §3), shared by the API and alert dispatch."""

from __future__ import annotations

import hashlib
import re

_SPLIT = re.compile(r"[,;\s]+")
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _tokens(text: str | None) -> list[str]:
    return [t.strip() for t in _SPLIT.split(text or "") if t.strip()]


def parse_recipients(text: str | None) -> list[str]:
    """Addresses in order, de-duplicated case-insensitively (first spelling kept)."""
    seen, addresses = set(), []
    for token in _tokens(text):
        if _ADDRESS.match(token) and token.lower() not in seen:
            seen.add(token.lower())
            addresses.append(token)
    return addresses


def invalid_recipients(text: str | None) -> list[str]:
    """Tokens that are not addresses (a write naming any of them is refused)."""
    return [t for t in _tokens(text) if not _ADDRESS.match(t)]


def synthetic_user_id(addresses: list[str]) -> str:
    """Stable id of an address list, independent of order and case (not a privacy measure)."""
    joined = "|".join(sorted(a.lower() for a in addresses))
    return "email-ingest:" + hashlib.sha256(joined.encode()).hexdigest()[:16]
