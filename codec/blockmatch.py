"""CPU block matching on 8-bit luma with OpenCV/numpy (the fast path on 2 cores).

Conventions shared by the whole codec (see ``codec.types``):
- a vector (dx, dy) belongs to a block of the CURRENT frame; the block is predicted from the previous
  reconstruction at (x + dx, y + dy), with coordinates clamped to the frame (edge replication, like H.264's
  unrestricted motion vectors);
- the cost is the paper's SAD: m_i = argmin_{u,w} sum_{j,k} |B_i(j,k) - B'_i(j+u, k+w)| (decouple-content-motion,
  Sec. "Efficient Decoupled Video Diffusion Model", the motion-vector equation), computed exactly in integers;
- ties are broken towards the shortest vector (shift order of ``shift_order``), so a static block stays at (0, 0).

SADs are computed with cv2.absdiff on uint8 and block sums read off cv2.integral (int32), which is exact and about
100x faster on this CPU than the equivalent torch ops.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def shift_order(radius: int) -> list[tuple[int, int]]:
    """All (dx, dy) in [-radius, radius]^2, shortest first (then dy, dx): the exhaustive search's tie-break order."""
    shifts = [(dx, dy) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    return sorted(shifts, key=lambda s: (s[0] * s[0] + s[1] * s[1], s[1], s[0]))


def luma_u8(rgb: np.ndarray) -> np.ndarray:
    """8-bit luma (BT.601, OpenCV's fixed point) of an HxWx3 uint8 RGB frame; a 1-channel frame is its own luma."""
    if rgb.ndim == 2:
        return rgb
    if rgb.shape[2] == 1:
        return np.ascontiguousarray(rgb[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def grid_size(height: int, width: int, block: int) -> tuple[int, int]:
    """Blocks per column and row; the frame is padded up to a whole number of blocks."""
    return math.ceil(height / block), math.ceil(width / block)


def pad_to_grid(img: np.ndarray, block: int) -> np.ndarray:
    """Edge-replicate the bottom/right so the block size divides the frame."""
    hb, wb = grid_size(img.shape[0], img.shape[1], block)
    ph, pw = hb * block - img.shape[0], wb * block - img.shape[1]
    if ph == 0 and pw == 0:
        return img
    return cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REPLICATE)


def pad_reference(ref: np.ndarray, block: int, margin: int) -> np.ndarray:
    """Reference frame with `margin` replicated pixels on every side plus the grid padding, so that
    ``out[margin + y + dy, margin + x + dx] == ref[clamp(y + dy), clamp(x + dx)]`` over the padded grid."""
    hb, wb = grid_size(ref.shape[0], ref.shape[1], block)
    ph, pw = hb * block - ref.shape[0], wb * block - ref.shape[1]
    return cv2.copyMakeBorder(ref, margin, margin + ph, margin, margin + pw, cv2.BORDER_REPLICATE)


def _block_sums(diff: np.ndarray, block: int, stride: int, hb: int, wb: int) -> np.ndarray:
    """Sum of the block x block square at (i*stride, j*stride) of `diff` for every block (int32, exact)."""
    integral = cv2.integral(diff)
    top, bottom = integral[0:hb * stride:stride], integral[block:block + hb * stride:stride]
    return (bottom[:, block:block + wb * stride:stride] - top[:, block:block + wb * stride:stride]
            - bottom[:, 0:wb * stride:stride] + top[:, 0:wb * stride:stride])


def _stacked_block_sums(diffs: np.ndarray, block: int, hb: int, wb: int) -> np.ndarray:
    """`_block_sums` (stride = block) of every image of a [n, H, W] uint8 stack with ONE integral: int32 [n, Hb, Wb].

    The images are summed as one tall image; a block's sum is a difference of integral rows inside its own image,
    so the rows above it cancel (callers keep n * H * W * 255 within int32, so the integral is exact)."""
    n, hh, ww = diffs.shape
    # `block` spare rows below the integral make "block rows further down" one reshaped view for all images
    # (never read: a block ends at most on the integral's last row)
    integral = np.empty((n * hh + block, ww + 1), np.int32)
    cv2.integral(diffs.reshape(n * hh, ww), sum=integral[:n * hh + 1])
    rows, left, right = slice(0, hb * block, block), slice(0, wb * block, block), slice(block, (wb + 1) * block, block)
    top = integral[:n * hh].reshape(n, hh, ww + 1)[:, rows]
    bottom = integral[block:block + n * hh].reshape(n, hh, ww + 1)[:, rows]
    return bottom[:, :, right] - top[:, :, right] - bottom[:, :, left] + top[:, :, left]


STACK_PIXELS = 1 << 20  # pixels of difference images per integral in sad_shifts: few calls, still cache-sized


def sad_shifts(cur: np.ndarray, ref_pad: np.ndarray, margin: int, block: int,
               shifts: list[tuple[int, int]]) -> np.ndarray:
    """SAD of every block of the grid-padded `cur` for each uniform shift (dx, dy): int32 [len(shifts), Hb, Wb]."""
    hp, wp = cur.shape
    hb, wb = hp // block, wp // block
    out = np.empty((len(shifts), hb, wb), np.int32)
    step = max(1, min(STACK_PIXELS, np.iinfo(np.int32).max // 255) // (hp * wp))
    diffs = np.empty((min(step, len(shifts)), hp, wp), np.uint8)
    for start in range(0, len(shifts), step):
        part = shifts[start:start + step]
        for k, (dx, dy) in enumerate(part):
            cv2.absdiff(ref_pad[margin + dy:margin + dy + hp, margin + dx:margin + dx + wp], cur, dst=diffs[k])
        out[start:start + len(part)] = _stacked_block_sums(diffs[:len(part)], block, hb, wb)
    return out


def gather_blocks(ref_pad: np.ndarray, margin: int, block: int, vectors: np.ndarray, extra: int = 0,
                  origins: np.ndarray | None = None) -> np.ndarray:
    """Mosaic of the reference squares each block points at, `extra` pixels wider on every side.

    vectors: int [Hb, Wb, 2] (dx, dy) with |v| + extra <= margin. Returns [Hb*S, Wb*S(, C)], S = block + 2*extra,
    cell (i, j) holding ref_pad around (margin + y0 + dy - extra, margin + x0 + dx - extra), where the block's
    top-left pixel (y0, x0) is (i*block, j*block), or origins[i, j] for a mosaic of selected blocks.
    """
    hb, wb = vectors.shape[:2]
    size = block + 2 * extra
    if origins is None:
        ys = margin + np.arange(hb)[:, None] * block + vectors[..., 1] - extra
        xs = margin + np.arange(wb)[None, :] * block + vectors[..., 0] - extra
    else:
        ys = margin + origins[..., 0] + vectors[..., 1] - extra
        xs = margin + origins[..., 1] + vectors[..., 0] - extra
    # every run of `size` pixels of a reference row; mosaic row (i, y) is the runs at row ys + y, columns xs
    window = size if ref_pad.ndim == 2 else (size, ref_pad.shape[2])
    runs = np.lib.stride_tricks.sliding_window_view(ref_pad, window, axis=1 if ref_pad.ndim == 2 else (1, 2))
    if ref_pad.ndim == 3:
        runs = runs[:, :, 0]
    patches = runs[ys[:, None, :] + np.arange(size)[None, :, None], xs[:, None, :]]  # [Hb, S, Wb, S(, C)]
    return patches.reshape(hb * size, wb * size, *ref_pad.shape[2:])


def sad_around(cur: np.ndarray, ref_pad: np.ndarray, margin: int, block: int, centers: np.ndarray,
               radius: int, diamond: bool = False,
               origins: np.ndarray | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """SAD of every block for every offset in [-radius, radius]^2 (diamond: |ox| + |oy| <= radius) around its own
    centre vector.

    `cur` is the grid-padded frame, or (origins [Hb, Wb, 2]: each block's top-left (y, x) in the frame) a mosaic
    of selected blocks. One gather of (block + 2*radius)^2 squares, then one absdiff + integral per offset on the
    mosaic.
    Returns (int32 [n_offsets, Hb, Wb], offsets in `shift_order` order).
    """
    hb, wb = centers.shape[:2]
    size = block + 2 * radius
    mosaic = gather_blocks(ref_pad, margin, block, centers, radius, origins)
    cur_mosaic = np.zeros_like(mosaic)
    cur_mosaic.reshape(hb, size, wb, size)[:, radius:radius + block, :, radius:radius + block] = \
        cur.reshape(hb, block, wb, block)
    hm, wm = mosaic.shape
    target = cur_mosaic[radius:hm - radius, radius:wm - radius]
    offsets = [s for s in shift_order(radius) if not diamond or abs(s[0]) + abs(s[1]) <= radius]
    out = np.empty((len(offsets), hb, wb), np.int32)
    for n, (ox, oy) in enumerate(offsets):
        moved = mosaic[radius + oy:hm - radius + oy, radius + ox:wm - radius + ox]
        out[n] = _block_sums(cv2.absdiff(moved, target), block, size, hb, wb)
    return out, offsets


def exhaustive_search(cur_y: np.ndarray, ref_y: np.ndarray, block: int, radius: int) -> np.ndarray:
    """Reference full search: the exact argmin SAD over [-radius, radius]^2 for every block. int32 [Hb, Wb, 2]."""
    cur = pad_to_grid(cur_y, block)
    ref_pad = pad_reference(ref_y, block, radius)
    shifts = shift_order(radius)
    hb, wb = cur.shape[0] // block, cur.shape[1] // block
    best = np.full((hb, wb), np.iinfo(np.int32).max, np.int32)
    best_idx = np.zeros((hb, wb), np.int64)
    chunk = 2 * radius + 1  # bounded memory: one row of shifts at a time
    for start in range(0, len(shifts), chunk):
        sads = sad_shifts(cur, ref_pad, radius, block, shifts[start:start + chunk])
        idx = sads.argmin(0)
        val = np.take_along_axis(sads, idx[None], 0)[0]
        better = val < best  # strict: earlier (shorter) shifts win ties
        best = np.where(better, val, best)
        best_idx = np.where(better, idx + start, best_idx)
    return np.asarray(shifts, np.int32)[best_idx]


def _refine(cur: np.ndarray, ref_pad: np.ndarray, margin: int, block: int, centers: np.ndarray,
            radius: int, limit: int, diamond: bool = False,
            origins: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best offset in [-radius, radius]^2 around each centre (centre wins ties); vectors stay within +-limit.
    Returns (vectors, their SADs, whether the best is not the (clipped) centre); `origins` as in ``sad_around``."""
    centers = np.clip(centers, -limit + radius, limit - radius) if limit > radius else np.clip(centers, -limit, limit)
    sads, offsets = sad_around(cur, ref_pad, margin, block, centers, radius, diamond, origins)
    offsets = np.asarray(offsets, np.int32)
    if limit <= radius:  # only then can a window reach past +-limit (otherwise the clip above keeps it inside)
        outside = (np.abs(centers[None] + offsets[:, None, None, :]) > limit).any(-1)
        sads = np.where(outside, np.iinfo(np.int32).max, sads)
    idx = sads.argmin(0)  # the paper's SAD argmin; the first minimum is the centre / shortest offset on ties
    return centers + offsets[idx], np.take_along_axis(sads, idx[None], 0)[0], idx != 0  # offsets[0] = (0, 0)


def _refine_blocks(cur_blocks: np.ndarray, ref_pad: np.ndarray, margin: int, block: int, vec: np.ndarray,
                   best: np.ndarray, select: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """`_refine` (+-1) of the selected blocks (bool [Hb, Wb]) only; the others keep their vector and SAD.

    The selected blocks are packed into a mosaic as wide as the grid (the last row padded with copies of the last
    block), so the work is proportional to their number."""
    iy, ix = np.nonzero(select)
    n, wb = len(iy), select.shape[1]
    if n == 0:
        return vec, best
    rows = -(-n // wb)
    pick = np.minimum(np.arange(rows * wb), n - 1)
    py, px = iy[pick], ix[pick]
    cur = cur_blocks[py, px].reshape(rows, wb, block, block).transpose(0, 2, 1, 3).reshape(rows * block, wb * block)
    origins = np.stack([py * block, px * block], -1).reshape(rows, wb, 2)
    got, sad, _ = _refine(cur, ref_pad, margin, block, vec[py, px].reshape(rows, wb, 2), 1, limit, origins=origins)
    vec, best = vec.copy(), best.copy()
    vec[iy, ix], best[iy, ix] = got.reshape(-1, 2)[:n], sad.reshape(-1)[:n]
    return vec, best


def _downsample(img: np.ndarray) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)


def fast_search(cur_y: np.ndarray, ref_y: np.ndarray, block: int, radius: int,
                predictors: np.ndarray | None = None) -> np.ndarray:
    """Hierarchical search with predictor candidates: the CPU default, about 10-15 ms per 960x540 frame here.

    1. Exhaustive SAD search on a 1/2^L luma pyramid level (blocks of block/2^L pixels, range radius/2^L).
    2. Each finer level doubles the vectors and refines them +-1 pixel.
    3. At full resolution, candidates from the block's neighbours, the zero vector and `predictors` (the previous
       pair's vectors: motion is smooth in time) are tried; the winner is refined +-1 once more.
    Every comparison is an exact integer SAD against the same clamped reference as the exhaustive search.
    """
    cur = pad_to_grid(cur_y, block)
    margin = radius + 2
    ref_full = pad_to_grid(ref_y, block)
    levels = min(2, int(math.log2(block)) - 1)
    curs, refs = [cur], [ref_full]
    for _ in range(levels):
        curs.append(_downsample(curs[-1]))
        refs.append(_downsample(refs[-1]))
    # 1. coarse exhaustive search
    cb, cr = block >> levels, max(1, math.ceil(radius / (1 << levels)))
    ref_c = cv2.copyMakeBorder(refs[-1], cr, cr, cr, cr, cv2.BORDER_REPLICATE)
    shifts = shift_order(cr)
    sads = sad_shifts(curs[-1], ref_c, cr, cb, shifts)
    vec = np.asarray(shifts, np.int32)[sads.argmin(0)]
    # 2. refine through the pyramid
    for lvl in range(levels - 1, -1, -1):
        lim = max(1, math.ceil(radius / (1 << lvl)))
        lb = block >> lvl
        if lvl == 0:
            ref_l = pad_reference(ref_y, block, margin)
        else:
            ref_l = cv2.copyMakeBorder(refs[lvl], lim + 2, lim + 2, lim + 2, lim + 2, cv2.BORDER_REPLICATE)
        vec, best, moved = _refine(curs[lvl], ref_l, margin if lvl == 0 else lim + 2, lb, vec * 2, 1, lim)
    # 3. predictor candidates at full resolution, evaluated only on the blocks where they differ
    cur_blocks = np.ascontiguousarray(cur.reshape(cur.shape[0] // block, block, -1, block).transpose(0, 2, 1, 3))
    edge = np.pad(vec, ((1, 1), (1, 1), (0, 0)), mode="edge")
    cands = [np.zeros_like(vec), edge[:-2, 1:-1], edge[2:, 1:-1], edge[1:-1, :-2], edge[1:-1, 2:]]  # up/down/left/right
    if predictors is not None and predictors.shape == vec.shape:
        cands.append(np.clip(predictors.astype(np.int32), -radius, radius))
    changed = np.zeros(vec.shape[:2], bool)
    for cand in cands:
        iy, ix = np.nonzero((cand != vec).any(-1))
        if len(iy) == 0:
            continue
        sad = sad_blocks(cur_blocks, ref_l, margin, block, iy, ix, cand[iy, ix])
        better = sad < best[iy, ix]
        iy, ix = iy[better], ix[better]
        vec[iy, ix], best[iy, ix], changed[iy, ix] = cand[iy, ix], sad[better], True
    # 4. +-1 refinement around the new vectors, on the blocks moved in step 3 or by the level-0 refinement: for
    #    every other block step 2 already found its vector to be the best of the same 3x3 (a pass over all blocks
    #    would keep it).
    if changed.any():
        vec, best = _refine_blocks(cur_blocks, ref_l, margin, block, vec, best, changed | moved, radius)
    return vec


def sad_blocks(cur_blocks: np.ndarray, ref_pad: np.ndarray, margin: int, block: int, iy: np.ndarray,
               ix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """SAD of the listed blocks (rows iy, cols ix of the grid) for one vector each: int32 [n].
    cur_blocks: [Hb, Wb, block, block] contiguous copy of the grid-padded current luma's blocks."""
    ys = margin + iy * block + vectors[:, 1]
    xs = margin + ix * block + vectors[:, 0]
    runs = np.lib.stride_tricks.sliding_window_view(ref_pad, block, axis=1)  # row runs, as in gather_blocks
    patches = runs[ys[:, None] + np.arange(block)[None, :], xs[:, None]]  # [n, block, block]
    n = len(iy)
    diff = cv2.absdiff(patches.reshape(n * block, block), cur_blocks[iy, ix].reshape(n * block, block))
    return cv2.reduce(diff.reshape(n, block * block), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S)[:, 0]


_BASE_GRIDS: dict[tuple[int, int], np.ndarray] = {}


def warp(ref: np.ndarray, vectors: np.ndarray, block: int) -> np.ndarray:
    """Motion-compensated prediction: every block copies the reference square its vector points at (clamped to
    the frame). ref: [H, W(, C)] uint8 or float32; vectors int [Hb, Wb, 2]. Returns [H, W(, C)] like ref.

    A nearest-neighbour cv2.remap with integer maps and replicated borders: an exact pixel copy (float32 frames are
    copied as their int32 bit patterns, so every value, -0.0 and denormals included, arrives unchanged)."""
    if ref.dtype == np.float32:
        return warp(ref.view(np.int32), vectors, block).view(np.float32)
    h, w = ref.shape[:2]
    if max(h, w) + np.abs(vectors).max(initial=0) >= 32767:
        raise ValueError("frame too large for int16 remap coordinates")
    base = _BASE_GRIDS.get((h, w))
    if base is None:
        base = np.empty((h, w, 2), np.int16)
        base[..., 0], base[..., 1] = np.arange(w)[None, :], np.arange(h)[:, None]
        _BASE_GRIDS.clear()
        _BASE_GRIDS[(h, w)] = base
    hb, wb = vectors.shape[:2]
    field = cv2.resize(vectors.astype(np.int16), (wb * block, hb * block), interpolation=cv2.INTER_NEAREST)
    coords = cv2.add(base, field[:h, :w])
    out = cv2.remap(ref, coords, None, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(ref.shape)
