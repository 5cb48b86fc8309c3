"""The MOTION_VECTORS value passed between the pack's nodes, the two precisions of a video, and the residual <->
IMAGE mappings.

Precision (what makes decode(encode(video)) bit-exact for any float32 IMAGE):
- "uint8": every value v of the video satisfies float32(round(v * 255)) / 255 == v bit for bit, i.e. the frames lie
  on the 8-bit grid (LoadImage, ComfyUI 0.8.0's LoadVideo, any 8-bit file). Frames are coded as uint8, residuals are
  int16 in -255..255 and travel as the float32 IMAGE (r + 255) / 510.
- "float32": anything else (ComfyUI 0.30.0's LoadVideo decodes to gbrpf32le, float nodes, -0.0, values outside
  0..1). Frames stay float32; the residual is the integer difference of the float32 bit patterns,
  d = bits(frame) - bits(prediction) modulo 2^32 (int32), and decode is bits(prediction) + d modulo 2^32 viewed as
  float32: a pure integer identity, exact for every float32 value. It travels as a float64 IMAGE 0.5 + d / 2^33
  (|d| < 2^31, so 33 bits of mantissa hold it exactly; zero at mid-grey like the 8-bit one). Such a residual
  IMAGE carries bit patterns, not brightness: its preview looks flat grey.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

BLOCK_SIZES = (4, 8, 16)
PRECISIONS = ("uint8", "float32")
_FLOAT_RESIDUAL_STEP = 2.0 ** -33  # one unit of the int32 bit difference in the float64 residual IMAGE


@dataclass(frozen=True)
class MotionVectors:
    """Per-block motion of a video, one field per frame pair (frame t-1 -> frame t).

    vectors: int16 [T-1 >= 1, Hb, Wb, 2], (dx, dy) in whole pixels for each block of frame t: the block at
        (by*block, bx*block) is predicted from the previous reconstructed frame at (y + dy, x + dx), coordinates
        clamped to the frame. Hb, Wb = ceil(H / block), ceil(W / block) (the frame is padded, then cropped back).
    block_size: 4, 8 or 16 pixels.
    frame_size: (H, W) of the frames the vectors were measured on.
    source: where the vectors come from, e.g. "search:fast", "search:exhaustive", "x264:medium".
    search_range: the +-R window of a search ("x264" sources: the largest vector component found).
    info: free-form JSON-able details (a dict).
    precision: "uint8" or "float32", the precision of the encoded frames and so of the residual (module docstring).
    """

    vectors: torch.Tensor
    block_size: int
    frame_size: tuple[int, int]
    source: str
    search_range: int
    info: dict = field(default_factory=dict)
    precision: str = "uint8"

    def __post_init__(self):
        v = self.vectors
        if not isinstance(v, torch.Tensor) or v.ndim != 4 or v.shape[-1] != 2 or v.dtype != torch.int16:
            raise ValueError("MotionVectors.vectors must be an int16 tensor [frame pairs, Hb, Wb, 2]")
        if v.shape[0] == 0:
            raise ValueError("MotionVectors holds 0 frame pairs; motion needs at least 2 frames (1 pair)")
        if self.block_size not in BLOCK_SIZES:
            raise ValueError(f"block_size must be one of {BLOCK_SIZES}, got {self.block_size}")
        h, w = self.frame_size
        if h < 1 or w < 1:
            raise ValueError(f"frame size {h}x{w} is empty; height and width must be at least 1 pixel")
        expect = (-(-h // self.block_size), -(-w // self.block_size))
        if tuple(v.shape[1:3]) != expect:
            raise ValueError(f"vector grid {tuple(v.shape[1:3])} does not match frame size {h}x{w} "
                             f"with {self.block_size}px blocks (expected {expect})")
        if not isinstance(self.info, dict):
            raise ValueError(f"MotionVectors.info must be a dict, got {type(self.info).__name__}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def num_frames(self) -> int:
        """Frames of the video the vectors describe (one more than the frame pairs)."""
        return self.vectors.shape[0] + 1

    def __repr__(self) -> str:
        h, w = self.frame_size
        return (f"MotionVectors({self.num_frames} frames, {w}x{h}, {self.block_size}px blocks, "
                f"source={self.source}, range={self.search_range}, precision={self.precision})")


def residual_to_image(residual: torch.Tensor) -> torch.Tensor:
    """Residual -> IMAGE, zero at mid-grey. int16 in [-255, 255] (uint8 precision) -> float32 (r + 255) / 510, exactly
    invertible (510 steps are far coarser than float32's precision); int32 bit differences (float32 precision) ->
    float64 0.5 + d / 2^33, exact. Computed in place on one new tensor (loading a big file allocates it once)."""
    if residual.dtype == torch.int32:
        return residual.to(torch.float64, copy=True).mul_(_FLOAT_RESIDUAL_STEP).add_(0.5)
    return residual.to(torch.float32, copy=True).add_(255.0).div_(510.0)


def image_to_residual(image: torch.Tensor) -> torch.Tensor:
    """Inverse of ``residual_to_image``, by the IMAGE's dtype: float64 -> int32 round((x - 0.5) * 2^33) (refused
    unless exactly on that grid, i.e. made by residual_to_image); any other float -> int16 round(x * 510) - 255."""
    if image.dtype == torch.float64:
        d = (image - 0.5).mul_(2.0 ** 33)
        if not torch.equal(d, torch.round(d)) or d.numel() and (d.min() < -2 ** 31 or d.max() >= 2 ** 31):
            raise ValueError("a float64 residual IMAGE must hold 0.5 + d / 2^33 for int32 d (Motion Vector Encode's "
                             "float32-precision residual); this one was changed on the way")
        return d.to(torch.int32)
    return (torch.round(image.to(torch.float32) * 510.0) - 255.0).clamp_(-255, 255).to(torch.int16)


def image_to_uint8(image: torch.Tensor) -> torch.Tensor:
    """ComfyUI IMAGE (float in [0, 1]) -> uint8 by round(x * 255): exact for frames that came from 8-bit files."""
    return torch.round(image.to(torch.float32).clamp(0, 1) * 255.0).to(torch.uint8)


def uint8_to_image(frames: torch.Tensor) -> torch.Tensor:
    """uint8 -> ComfyUI IMAGE float32 x / 255."""
    return frames.to(torch.float32) / 255.0


def codec_frames(image: torch.Tensor) -> torch.Tensor:
    """The frames the codec works on for an IMAGE: uint8 round(x * 255) when uint8 / 255 gives the float32 IMAGE back
    bit for bit (precision "uint8": the 8-bit grid; -0.0 and values outside 0..1 are not on it), else the float32
    values themselves (precision "float32")."""
    x = image.to(torch.float32)
    q = image_to_uint8(x)
    return q if torch.equal(uint8_to_image(q).view(torch.int32), x.view(torch.int32)) else x.contiguous()


def codec_to_image(frames: torch.Tensor) -> torch.Tensor:
    """Inverse of ``codec_frames``: uint8 -> x / 255, float32 frames as they are."""
    return uint8_to_image(frames) if frames.dtype == torch.uint8 else frames


def frame_precision(frames: torch.Tensor) -> str:
    """The precision of codec frames by their dtype: uint8 -> "uint8", float32 -> "float32"."""
    if frames.dtype == torch.uint8:
        return "uint8"
    if frames.dtype == torch.float32:
        return "float32"
    raise ValueError(f"frames must be uint8 (8-bit) or float32, got {frames.dtype}")


def bits_difference(frame: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """int32 d = bits(frame) - bits(prediction) modulo 2^32 of two float32 CPU tensors (numpy's uint32 arithmetic
    wraps by definition); ``bits_add(prediction, d)`` gives `frame` back bit for bit."""
    a = frame.contiguous().numpy().view(np.uint32)
    b = prediction.contiguous().numpy().view(np.uint32)
    return torch.from_numpy((a - b).view(np.int32))


def bits_add(prediction: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """float32 with bits(prediction) + d modulo 2^32 (the inverse of ``bits_difference``)."""
    a = prediction.contiguous().numpy().view(np.uint32)
    b = d.contiguous().numpy().view(np.uint32)
    return torch.from_numpy((a + b).view(np.float32))
