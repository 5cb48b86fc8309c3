"""Baselines and the score that bench/saliency_eval.py compares the Salient Mask against (not part of the pack's
nodes): the centred-ellipse guess, spectral residual saliency (Hou & Zhang, CVPR 2007) and IoU."""
from __future__ import annotations

import cv2
import numpy as np
from pack_import import register_pack

register_pack()
from vcut.loop.saliency import _normalize  # noqa: E402  (after the sys.path / package setup above)


def centred_ellipse_mask(h: int, w: int, axis_frac: float = 0.35) -> np.ndarray:
    """A centred ellipse with semi-axes axis_frac*W and axis_frac*H (the trivial 'object is in the middle' guess)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return ((xx - (w - 1) / 2) / (axis_frac * w)) ** 2 + ((yy - (h - 1) / 2) / (axis_frac * h)) ** 2 <= 1.0


def spectral_residual_map(rgb: np.ndarray) -> np.ndarray:
    """Spectral residual saliency (Hou & Zhang, CVPR 2007) at the input size, in [0, 1]."""
    h, w = rgb.shape[:2]
    gray = cv2.cvtColor(np.clip(rgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(gray, (64, max(1, round(64 * h / w))), interpolation=cv2.INTER_AREA)
    spec = np.fft.fft2(small)
    log_amp = np.log(np.abs(spec) + 1e-8)
    phase = np.angle(spec)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), 2.5)
    return _normalize(cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a = a.astype(bool)
    b = b.astype(bool)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)
