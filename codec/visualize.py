"""Pictures of motion: a colour wheel of the vector field (hue = direction, brightness = length).

Previews are capped, so that a file of thousands of tiny frame pairs, or of huge frames, cannot fill memory or the
temp folder: at most PREVIEW_MAX_FRAMES pictures (the first frame pairs) of at most PREVIEW_MAX_SIDE pixels on the
long side (larger frames are shown scaled down by a whole factor)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .types import MotionVectors

PREVIEW_MAX_FRAMES = 32
PREVIEW_MAX_SIDE = 1024


def flow_colours(vectors: np.ndarray, max_len: float) -> np.ndarray:
    """uint8 RGB [Hb, Wb, 3] of (dx, dy) vectors [Hb, Wb, 2]: hue from the angle, brightness sqrt(length / max_len)
    (the square root keeps small motions visible next to the largest one). Zero motion is black."""
    v = vectors.astype(np.float32)
    mag, ang = cv2.cartToPolar(v[..., 0], v[..., 1], angleInDegrees=True)
    hsv = np.empty((*v.shape[:2], 3), np.uint8)
    hsv[..., 0] = (ang / 2).astype(np.uint8)  # OpenCV hue is 0..179
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(np.sqrt(mag / max(max_len, 1e-6)) * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _scale(height: int, width: int) -> int:
    """The whole factor a frame is shrunk by in its preview (1 up to PREVIEW_MAX_SIDE on the long side)."""
    return -(-max(height, width) // PREVIEW_MAX_SIDE)


def preview_shape(pairs: int, height: int, width: int) -> tuple[int, int, int]:
    """(frames, height, width) of the preview of `pairs` frame pairs of height x width."""
    s = _scale(height, width)
    return min(pairs, PREVIEW_MAX_FRAMES), -(-height // s), -(-width // s)


def motion_preview(motion: MotionVectors) -> torch.Tensor:
    """float32 IMAGE [min(T-1, PREVIEW_MAX_FRAMES), H', W', 3]: each frame pair's vector field as a colour wheel,
    blocks drawn at frame size (H', W' = H, W up to PREVIEW_MAX_SIDE, else shrunk by a whole factor), lengths
    normalised by the largest vector of the whole video (so frames are comparable)."""
    h, w = motion.frame_size
    b, s = motion.block_size, _scale(h, w)
    vec = motion.vectors.numpy()
    max_len = float(np.sqrt((vec.astype(np.float32) ** 2).sum(-1)).max())
    frames, ph, pw = preview_shape(vec.shape[0], h, w)
    rows, cols = np.arange(ph) * s // b, np.arange(pw) * s // b  # the block each preview pixel lies in
    out = torch.empty((frames, ph, pw, 3), dtype=torch.float32)
    for i in range(frames):
        out[i] = torch.from_numpy(flow_colours(vec[i], max_len)[rows][:, cols]).float() / 255.0
    return out
