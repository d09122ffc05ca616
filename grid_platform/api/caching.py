"""ETags, conditional requests and the server-side cache of fetcher response bodies.

An ETag is derived from the publication's content hash, the fetcher (id and spec digest),
the normalised payload (defaults and computed dates included) and limit/offset, so it can
be answered -- 304 or a cached body -- before any query runs. Bodies are kept in a
byte-bounded LRU with a lazily computed gzip variant, so a large FeatureCollection is
serialised and compressed once per publication, not per request.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

GZIP_MIN_BYTES = 1024


def make_etag(content_hash: str | None, fetcher_id: str, digest: str, payload: dict[str, Any],
              limit: int, offset: int) -> str:
    key = b"|".join([
        (content_hash or "unpublished").encode(), fetcher_id.encode(), digest.encode(),
        orjson.dumps(payload, option=orjson.OPT_SORT_KEYS), str(limit).encode(), str(offset).encode(),
    ])
    # Weak: the identity and gzip encodings of one body share it.
    return f'W/"{hashlib.sha256(key).hexdigest()[:40]}"'


def if_none_match(header: str | None, etag: str) -> bool:
    """Weak comparison (RFC 9110 §13.1.2) of an ``If-None-Match`` header with ``etag``."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in header.split(","))


def accepts_gzip(header: str | None) -> bool:
    for entry in (header or "").lower().split(","):
        coding, _, params = entry.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            return not (params and q.replace(".", "", 1).isdigit() and float(q) == 0)
    return False


@dataclass
class CachedBody:
    body: bytes
    headers: dict[str, str]  # result headers (truncation, skipped features)
    _gzip: bytes | None = field(default=None, repr=False)

    @property
    def compressible(self) -> bool:
        return len(self.body) >= GZIP_MIN_BYTES

    def gzipped(self) -> bytes:
        if self._gzip is None:
            self._gzip = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzip

    @property
    def size(self) -> int:
        return len(self.body) + len(self._gzip or b"")


class ResponseCache:
    """Byte-bounded LRU of entries with a ``size`` (response bodies; row slices in ``slices``)."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, etag: str) -> Any:
        with self._lock:
            entry = self._entries.get(etag)
            if entry is not None:
                self._entries.move_to_end(etag)
            return entry

    def put(self, etag: str, entry: Any) -> None:
        if entry.size * 2 > self.max_bytes:  # never let one body evict everything
            return
        with self._lock:
            old = self._entries.pop(etag, None)
            self._bytes -= old.size if old else 0
            self._entries[etag] = entry
            self._bytes += entry.size
            while self._bytes > self.max_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.size

    def resize(self, etag: str, entry: CachedBody, before: int) -> None:
        """Account for a gzip variant added after insertion."""
        with self._lock:
            if self._entries.get(etag) is entry:
                self._bytes += entry.size - before
