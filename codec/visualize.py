"""Pictures of motion: a colour wheel of the vector field (hue = direction, brightness = length)."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from .types import MotionVectors


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


def motion_preview(motion: MotionVectors) -> torch.Tensor:
    """float32 IMAGE [T-1, H, W, 3]: each frame pair's vector field as a colour wheel, blocks drawn at frame size,
    lengths normalised by the largest vector of the whole video (so frames are comparable)."""
    h, w = motion.frame_size
    b = motion.block_size
    vec = motion.vectors.numpy()
    max_len = float(np.sqrt((vec.astype(np.float32) ** 2).sum(-1)).max()) if vec.size else 1.0
    out = torch.empty((vec.shape[0], h, w, 3), dtype=torch.float32)
    for i in range(vec.shape[0]):
        rgb = flow_colours(vec[i], max_len).repeat(b, 0).repeat(b, 1)[:h, :w]
        out[i] = torch.from_numpy(rgb).float() / 255.0
    return out
