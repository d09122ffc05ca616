"""Split source lines into fragments at municipal borders (risk-model.md §2).

No municipal borders exist offline, so the stand-in is a square grid in EPSG:32632
(default 2 500 m): a "municipality" is the cell named after its south-west corner in km,
``"cell E412.5 N5365.0"``. Every line is cut where it crosses a cell border and each piece
goes to the cell holding its midpoint (half-open cells, so a piece running exactly along a
border is never duplicated). The split is vectorised over all line vertices.

A fragment id is the source line id plus the split index along the line
(``"<line_id>/<k>"``): stable across builds and unique even for pieces of equal length.
"""

from __future__ import annotations

import numpy as np
import shapely

DEFAULT_CELL_M = 2500.0
MUNICIPALITY_PROVENANCE = (
    "stand-in: {cell:g} m EPSG:32632 grid cell holding the fragment midpoint, named "
    "'cell E<x_km> N<y_km>' after its south-west corner; lines are split at cell borders"
)


def cell_name(ix: np.ndarray, iy: np.ndarray, cell_m: float) -> np.ndarray:
    """Cell names for integer cell indices (vectorised over unique cells)."""
    ix, iy = np.asarray(ix, dtype=np.int64), np.asarray(iy, dtype=np.int64)
    if len(ix) == 0:
        return np.empty(0, dtype=object)
    span = int(iy.max() - iy.min()) + 1
    uniq, inv = np.unique((ix - ix.min()) * span + (iy - iy.min()), return_inverse=True)
    ux, uy = uniq // span + ix.min(), uniq % span + iy.min()
    names = np.array(
        [f"cell E{x * cell_m / 1000:.1f} N{y * cell_m / 1000:.1f}" for x, y in zip(ux.tolist(), uy.tolist())],
        dtype=object,
    )
    return names[inv.ravel()]


def _crossings(lo: np.ndarray, hi: np.ndarray, p: np.ndarray, d: np.ndarray, cell: float):
    """Parameters t in (0, 1) where segments cross grid lines k*cell along one axis."""
    k_lo = np.floor(lo / cell).astype(np.int64) + 1
    k_hi = np.ceil(hi / cell).astype(np.int64) - 1
    cnt = np.maximum(k_hi - k_lo + 1, 0)
    seg = np.repeat(np.arange(len(lo)), cnt)
    if len(seg) == 0:
        return seg, np.empty(0)
    offs = np.cumsum(cnt) - cnt
    k = k_lo[seg] + (np.arange(len(seg)) - offs[seg])
    return seg, (k * cell - p[seg]) / d[seg]


def split_lines(geoms: np.ndarray, cell_m: float = DEFAULT_CELL_M):
    """Split LineStrings (EPSG:32632) at cell borders.

    Returns ``(line_pos, split_index, pieces, cell_ix, cell_iy)`` with one entry per
    fragment, ordered by line then position along the line.
    """
    geoms = np.asarray(geoms, dtype=object)
    coords, idx = shapely.get_coordinates(geoms, return_index=True)
    same = idx[1:] == idx[:-1]
    p = coords[:-1][same]
    q = coords[1:][same]
    seg_line = idx[:-1][same]
    d = q - p
    sx, tx = _crossings(np.minimum(p[:, 0], q[:, 0]), np.maximum(p[:, 0], q[:, 0]), p[:, 0], d[:, 0], cell_m)
    sy, ty = _crossings(np.minimum(p[:, 1], q[:, 1]), np.maximum(p[:, 1], q[:, 1]), p[:, 1], d[:, 1], cell_m)
    nseg = len(p)
    s = np.concatenate([np.arange(nseg), sx, sy])
    t = np.concatenate([np.zeros(nseg), tx, ty])
    order = np.lexsort((t, s))
    s, t = s[order], t[order]
    last = np.ones(len(s), dtype=bool)
    last[:-1] = s[1:] != s[:-1]
    t_end = np.where(last, 1.0, np.roll(t, -1))
    # Exact end points at t = 0 and t = 1, so pieces share vertices bit for bit.
    A = np.where((t == 0)[:, None], p[s], p[s] + t[:, None] * d[s])
    B = np.where((t_end == 1)[:, None], q[s], p[s] + t_end[:, None] * d[s])
    keep = np.any(A != B, axis=1)
    A, B, s = A[keep], B[keep], s[keep]
    line = seg_line[s]
    mid = (A + B) / 2.0
    ix = np.floor(mid[:, 0] / cell_m).astype(np.int64)
    iy = np.floor(mid[:, 1] / cell_m).astype(np.int64)
    new_piece = np.ones(len(line), dtype=bool)
    new_piece[1:] = (line[1:] != line[:-1]) | (ix[1:] != ix[:-1]) | (iy[1:] != iy[:-1])
    piece = np.cumsum(new_piece) - 1
    npieces = int(piece[-1]) + 1 if len(piece) else 0
    last_in_piece = np.ones(len(line), dtype=bool)
    last_in_piece[:-1] = new_piece[1:]
    out = np.empty((len(A) + npieces, 2))
    out[np.arange(len(A)) + piece] = A
    out[np.flatnonzero(last_in_piece) + piece[last_in_piece] + 1] = B[last_in_piece]
    sizes = np.bincount(piece, minlength=npieces) + 1
    p_line = line[new_piece]
    p_ix, p_iy = ix[new_piece], iy[new_piece]
    # Unsplit lines keep their own geometry object; only cut lines get new pieces.
    n_of_line = np.bincount(p_line, minlength=len(geoms))
    cut = n_of_line[p_line] > 1
    pieces = geoms[p_line]
    if cut.any():
        pt_piece = np.repeat(np.arange(npieces), sizes)
        sel = cut[pt_piece]
        pieces[cut] = shapely.linestrings(out[sel], indices=np.repeat(np.arange(int(cut.sum())), sizes[cut]))

    # Lines with no extent (all vertices equal) stay one fragment, in the cell of their
    # first vertex, so the geometry check reports them instead of losing them.
    missing = np.setdiff1d(np.arange(len(geoms)), p_line)
    if len(missing):
        first = shapely.get_point(geoms[missing], 0)
        fx, fy = shapely.get_x(first), shapely.get_y(first)
        p_line = np.concatenate([p_line, missing])
        pieces = np.concatenate([pieces, geoms[missing]])
        p_ix = np.concatenate([p_ix, np.floor(np.nan_to_num(fx) / cell_m).astype(np.int64)])
        p_iy = np.concatenate([p_iy, np.floor(np.nan_to_num(fy) / cell_m).astype(np.int64)])
        o = np.argsort(p_line, kind="stable")
        p_line, pieces, p_ix, p_iy = p_line[o], pieces[o], p_ix[o], p_iy[o]
    start = np.ones(len(p_line), dtype=bool)
    start[1:] = p_line[1:] != p_line[:-1]
    run_start = np.maximum.accumulate(np.where(start, np.arange(len(p_line)), 0))
    split_index = np.arange(len(p_line)) - run_start
    return p_line, split_index, pieces, p_ix, p_iy
