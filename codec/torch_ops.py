"""Device-agnostic torch versions of the codec's block matching and warp (used on the GPU, and as a second,
independent implementation that the CPU path is tested against). Same conventions as ``codec.blockmatch``:
(dx, dy) per current block, clamped reference coordinates, exact integer SAD, ties to the shortest vector."""
from __future__ import annotations

import torch

from .blockmatch import shift_order


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """8-bit luma [H, W] int32 of a [H, W, C] uint8 frame, the same fixed-point BT.601 as OpenCV's RGB2GRAY."""
    if rgb.shape[-1] == 1:
        return rgb[..., 0].to(torch.int32)
    x = rgb.to(torch.int32)
    return (x[..., 0] * 4899 + x[..., 1] * 9617 + x[..., 2] * 1868 + 8192) >> 14


def _pad_grid(img: torch.Tensor, block: int) -> torch.Tensor:
    """Edge-replicate the bottom/right of [H, W] so the block size divides it."""
    h, w = img.shape
    hp, wp = -(-h // block) * block, -(-w // block) * block
    rows = torch.arange(hp, device=img.device).clamp_max(h - 1)
    cols = torch.arange(wp, device=img.device).clamp_max(w - 1)
    return img[rows][:, cols]


def exhaustive_search(cur_y: torch.Tensor, ref_y: torch.Tensor, block: int, radius: int) -> torch.Tensor:
    """Full search: exact argmin SAD over [-radius, radius]^2 for every block of [H, W] luma. int32 [Hb, Wb, 2]."""
    cur = _pad_grid(cur_y.to(torch.int32), block)
    hp, wp = cur.shape
    hb, wb = hp // block, wp // block
    h, w = ref_y.shape
    rows = (torch.arange(-radius, hp + radius, device=cur.device)).clamp(0, h - 1)
    cols = (torch.arange(-radius, wp + radius, device=cur.device)).clamp(0, w - 1)
    ref_pad = ref_y.to(torch.int32)[rows][:, cols]
    shifts = shift_order(radius)
    best = torch.full((hb, wb), torch.iinfo(torch.int32).max, dtype=torch.int32, device=cur.device)
    best_idx = torch.zeros((hb, wb), dtype=torch.int64, device=cur.device)
    chunk = 2 * radius + 1  # bounded memory: (2R+1) shifted frames at a time
    for start in range(0, len(shifts), chunk):
        part = shifts[start:start + chunk]
        shifted = torch.stack([ref_pad[radius + dy:radius + dy + hp, radius + dx:radius + dx + wp] for dx, dy in part])
        sads = (shifted - cur).abs_().view(len(part), hb, block, wb, block).sum((2, 4), dtype=torch.int32)
        val, idx = sads.min(0)  # first minimum on ties (shorter shift)
        better = val < best
        best = torch.where(better, val, best)
        best_idx = torch.where(better, idx + start, best_idx)
    return torch.tensor(shifts, dtype=torch.int32, device=cur.device)[best_idx]


def warp(ref: torch.Tensor, vectors: torch.Tensor, block: int) -> torch.Tensor:
    """Motion-compensated prediction of [H, W, C] from per-block vectors [Hb, Wb, 2] (dx, dy), clamped coordinates."""
    h, w = ref.shape[:2]
    hb, wb = vectors.shape[:2]
    v = vectors.to(device=ref.device, dtype=torch.int64)
    dx = v[..., 0].repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    dy = v[..., 1].repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    yy = (torch.arange(h, device=ref.device)[:, None] + dy).clamp_(0, h - 1)
    xx = (torch.arange(w, device=ref.device)[None, :] + dx).clamp_(0, w - 1)
    return ref[yy, xx]
