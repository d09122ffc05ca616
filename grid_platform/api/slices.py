"""Slice cache: decoded rows per (publication, fetcher, single value of each ``slice_by`` key).

A fetcher whose spec names ``slice_by: [dates, risk_vector]`` answers a payload as the
concatenation of one slice per combination of the given values (sorted, deduplicated; an
absent key is one slice without that filter). Each slice is the fetcher's own query run with
one-item lists, kept as encoded JSON rows in a byte-bounded LRU keyed by the publication's
content hash, so a slice is read from Parquet once per publication version and every later
request for it -- alone or with other dates -- costs a join of bytes. Requirement on such a
spec: its ``ORDER BY`` starts with the ``slice_by`` columns, ascending, in that order, and
their values sort as text (ISO dates, plain enums) -- the tests compare both paths.

A payload with more than ``MAX_SLICES`` slices, or a slice beyond the route limit, is
answered by the plain query (``None`` here).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from grid_platform.api.caching import ResponseCache, make_etag
from grid_platform.api.fetchers import Client, FetcherSpec, FetchResult, ModelSpec, dumps, execute
from grid_platform.api.publications import Entity

MAX_SLICES = 32


@dataclass(frozen=True)
class RowSlice:
    """Encoded rows joined by commas; ``ends[i]`` is where row ``i`` ends in ``data``."""

    data: bytes
    ends: tuple[int, ...]

    @classmethod
    def encode(cls, rows: list[Any]) -> RowSlice:
        encoded = [dumps(row) for row in rows]
        ends, position = [], -1
        for row in encoded:
            position += len(row) + 1
            ends.append(position)
        return cls(b",".join(encoded), tuple(ends))

    @property
    def size(self) -> int:
        return len(self.data) + 8 * len(self.ends)

    def rows(self, first: int, stop: int) -> bytes:
        """Rows ``first`` to ``stop - 1`` as comma-joined bytes (no copy for the whole slice)."""
        start = self.ends[first - 1] + 1 if first else 0
        return self.data if (first, stop) == (0, len(self.ends)) else self.data[start:self.ends[stop - 1]]


def slice_payloads(spec: FetcherSpec, payload: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """One payload per slice, in the order of the fetcher's ``ORDER BY``; None: too many."""
    axes = [sorted(set(payload[key])) if payload.get(key) else [None] for key in spec.slice_by]
    if any(len(a) > MAX_SLICES for a in axes):  # before building a product of them
        return None
    combos = list(itertools.product(*axes))
    if len(combos) > MAX_SLICES:
        return None
    out = []
    for combo in combos:
        part = dict(payload)
        for key, value in zip(spec.slice_by, combo):
            if value is None:
                part.pop(key, None)
            else:
                part[key] = [value]
        out.append(part)
    return out


def execute_sliced(spec: FetcherSpec, model: ModelSpec, client: Client, entity: Entity,
                   payload: Mapping[str, Any], *, limit: int, offset: int,
                   cache: ResponseCache) -> FetchResult | None:
    """The HTTP body of ``execute(..., json_passthrough=True)`` assembled from cached slices."""
    if not entity.published:
        return None
    payloads = slice_payloads(spec, payload)
    if payloads is None:
        return None
    pieces: list[bytes] = []
    seen = count = 0  # rows before the current slice; rows on the page
    for part in payloads:
        key = make_etag(entity.content_hash, spec.qualified_id, spec.digest, part, spec.limit, 0)
        found = cache.get(key)
        if found is None:
            result = execute(spec, model, client, entity, part, limit=spec.limit, offset=0, json_passthrough=True)
            if result.truncated:  # a slice larger than the route limit: let the plain query page it
                return None
            found = RowSlice.encode(result.body["items"] if spec.response.shape == "envelope" else result.body)
            cache.put(key, found)
        n = len(found.ends)
        first, stop = max(offset - seen, 0), min(offset + limit - seen, n)
        if first < stop:
            pieces.append(found.rows(first, stop))
            count += stop - first
        seen += n
    items = orjson.Fragment(b"[" + b",".join(pieces) + b"]")
    body = ({"items": items, "limit": limit, "offset": offset, "count": count}
            if spec.response.shape == "envelope" else items)
    return FetchResult(body, truncated=seen > offset + limit)
