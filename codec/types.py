"""The MOTION_VECTORS value passed between the pack's nodes, and the residual <-> IMAGE mapping."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

BLOCK_SIZES = (4, 8, 16)


@dataclass(frozen=True)
class MotionVectors:
    """Per-block motion of a video, one field per frame pair (frame t-1 -> frame t).

    vectors: int16 [T-1, Hb, Wb, 2], (dx, dy) in whole pixels for each block of frame t: the block at
        (by*block, bx*block) is predicted from the previous reconstructed frame at (y + dy, x + dx), coordinates
        clamped to the frame. Hb, Wb = ceil(H / block), ceil(W / block) (the frame is padded, then cropped back).
    block_size: 4, 8 or 16 pixels.
    frame_size: (H, W) of the frames the vectors were measured on.
    source: where the vectors come from, e.g. "search:fast", "search:exhaustive", "x264:medium".
    search_range: the +-R window of a search ("x264" sources: the largest vector component found).
    """

    vectors: torch.Tensor
    block_size: int
    frame_size: tuple[int, int]
    source: str
    search_range: int
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        v = self.vectors
        if not isinstance(v, torch.Tensor) or v.ndim != 4 or v.shape[-1] != 2 or v.dtype != torch.int16:
            raise ValueError("MotionVectors.vectors must be an int16 tensor [frame pairs, Hb, Wb, 2]")
        if self.block_size not in BLOCK_SIZES:
            raise ValueError(f"block_size must be one of {BLOCK_SIZES}, got {self.block_size}")
        h, w = self.frame_size
        expect = (-(-h // self.block_size), -(-w // self.block_size))
        if tuple(v.shape[1:3]) != expect:
            raise ValueError(f"vector grid {tuple(v.shape[1:3])} does not match frame size {h}x{w} "
                             f"with {self.block_size}px blocks (expected {expect})")

    @property
    def num_frames(self) -> int:
        """Frames of the video the vectors describe (one more than the frame pairs)."""
        return self.vectors.shape[0] + 1

    def __repr__(self) -> str:
        h, w = self.frame_size
        return (f"MotionVectors({self.num_frames} frames, {w}x{h}, {self.block_size}px blocks, "
                f"source={self.source}, range={self.search_range})")


def residual_to_image(residual: torch.Tensor) -> torch.Tensor:
    """int16 residual in [-255, 255] -> float32 IMAGE in [0, 1], zero at mid-grey: (r + 255) / 510.
    Exactly invertible by ``image_to_residual`` (510 steps are far coarser than float32's precision)."""
    return (residual.to(torch.float32) + 255.0) / 510.0


def image_to_residual(image: torch.Tensor) -> torch.Tensor:
    """Inverse of ``residual_to_image``: round(x * 510) - 255 as int16."""
    return (torch.round(image.to(torch.float32) * 510.0) - 255.0).clamp_(-255, 255).to(torch.int16)


def image_to_uint8(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE (float in [0, 1]) -> uint8 by round(x * 255): exact for frames that came from 8-bit files."""
    return torch.round(image.to(torch.float32).clamp(0, 1) * 255.0).to(torch.uint8)


def uint8_to_image(frames: torch.Tensor) -> torch.Tensor:
    """uint8 -> ComfyUI IMAGE float32 x / 255."""
    return frames.to(torch.float32) / 255.0
