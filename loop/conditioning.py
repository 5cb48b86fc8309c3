"""LoopAnimate's inference-time conditioning layouts mapped onto SVD (no ComfyUI import).

SVD's UNet input is [noisy latent (4 ch), concat latent (4 ch)] per frame; LoopAnimate's is [Z_t, Z_SD, Z_M]
(Eq. 11). SVD has no mask channel, so the FGSM mask becomes a motion region: outside it the latent is anchored
to the image (see ../anchor/anchoring.py). All tensors are [frames, C, h, w] (frames are SVD's batch dimension).
"""
from __future__ import annotations

import torch

from ..anchor.anchoring import blend, one_image_latent, repeat_layout
from ..anchor.plans import AnchorPlan, check_latent_values

CONCAT_LAYOUTS = ("sdslc", "repeat")
MASK_LAYOUTS = ("still background", "paper eq. 10")
INITS = ("inverted noise", "empty")


def loop_frame_count(requested: int) -> int:
    """Frames for a loop: 2f - 1 (odd, as ALSS makes them). An even request is rounded UP to the next odd count
    (14 -> 15), so no requested frame is lost; the extra frame is the closing frame. Needs at least 2 frames."""
    if requested < 2:
        raise ValueError(f"latent: a loop needs at least 3 frames (2f-1 with f >= 2), got {requested}")
    return requested if requested % 2 == 1 else requested + 1


def sdslc_layout(image_latent: torch.Tensor, frames: int) -> torch.Tensor:
    """LoopAnimate Eq. 8 (SDSLC) at inference: Z_SD = [e(F0), ZeroPAD, e(F0)]; the last frame's latent is unknown at
    inference, so both ends carry the first image and every frame in between is zero."""
    z = one_image_latent(image_latent)
    if frames < 2:
        raise ValueError(f"SDSLC needs at least 2 frames, got {frames}")
    out = torch.zeros((frames,) + tuple(z.shape[1:]), dtype=z.dtype, device=z.device)
    out[0] = z[0]
    out[-1] = z[0]
    return out


def concat_layout(image_latent: torch.Tensor, frames: int, layout: str) -> torch.Tensor:
    if layout == "sdslc":
        return sdslc_layout(image_latent, frames)
    if layout == "repeat":
        return repeat_layout(image_latent, frames)
    raise ValueError(f"concat_layout must be one of {CONCAT_LAYOUTS}, got '{layout}'")


def inverted_noise_init(image_latent: torch.Tensor, frames: int) -> torch.Tensor:
    """LoopAnimate Eq. 5 at inference: Z_0 = e(F0, ..., F0), the only frame known is the input image, on every frame.
    The sampler then adds noise to it (Eq. 6; in SVD's EDM form x_t = Z_0 + sigma * eps), so it starts from the
    degraded image rather than from pure noise. At full denoise (sigma_max = 700) the image is practically drowned;
    it matters with denoise < 1."""
    return repeat_layout(image_latent, frames)


def fgsm_layout(m0: torch.Tensor, frames: int) -> torch.Tensor:
    """LoopAnimate Eq. 10 at inference (Sec. 3.3.3): Z_M = [M0, OnePAD, M0]. `m0` is [1, 1, h, w]; returns
    [frames, 1, h, w] with the object mask at both ends and ones on every frame in between."""
    if m0.ndim != 4 or m0.shape[:2] != (1, 1):
        raise ValueError(f"FGSM mask: expected [1, 1, h, w], got shape {tuple(m0.shape)}")
    if frames < 2:
        raise ValueError(f"FGSM layout needs at least 2 frames, got {frames}")
    out = torch.ones((frames, 1) + tuple(m0.shape[2:]), dtype=m0.dtype, device=m0.device)
    out[0] = m0[0]
    out[-1] = m0[0]
    return out


def motion_masks(masks: torch.Tensor, frames: int, layout: str) -> torch.Tensor:
    """Region allowed to move on each frame, [frames, 1, h, w], from [1 or frames, 1, h, w] masks.

    "paper eq. 10": Eq. 10's layout (object region at both ends, everything free in between).
    "still background": the mask on every frame (one mask per frame if `frames` are given), so the background
    outside it never moves -- the training-free reading of FGSM on SVD, which has no mask input channel."""
    if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] not in (1, frames):
        raise ValueError(f"motion_mask: expected 1 mask or one per frame ({frames}), got shape {tuple(masks.shape)}")
    if layout == "paper eq. 10":
        return fgsm_layout(masks[:1], frames)
    if layout == "still background":
        return masks.expand((frames,) + tuple(masks.shape[1:])).clone()
    raise ValueError(f"mask_layout must be one of {MASK_LAYOUTS}, got '{layout}'")


def loop_keep_mask(frames: int, height: int, width: int, motion: torch.Tensor | None = None,
                   close_loop: bool = True, anchor_first: bool = True) -> torch.Tensor:
    """Where a loop is anchored to the first image, [frames, 1, h, w]: outside the motion region (1 - motion), and
    the whole first / last frame when anchor_first / close_loop (loop closure: the video returns to its start)."""
    keep = torch.zeros(frames, 1, height, width)
    if motion is not None:
        if motion.shape != keep.shape:
            raise ValueError(f"motion mask shape {tuple(motion.shape)} != {tuple(keep.shape)}")
        keep = 1.0 - motion.to(keep)
    if anchor_first:
        keep[0] = 1.0
    if close_loop:
        keep[-1] = 1.0
    return keep


def loop_plan(image_latent: torch.Tensor, frames: int, layout: str, init: str,
              motion: torch.Tensor | None = None, close_loop: bool = True, anchor_first: bool = True) -> AnchorPlan:
    """LoopAnimate at inference on SVD: concat layout (SDSLC Eq. 8 or SVD's repeat), the inverted-noise init latent
    (Eq. 5-6) or zeros, and the keep mask (outside the FGSM motion region, first frame, closing frame)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got '{init}'")
    check_latent_values(image_latent, "positive")
    _, c, h, w = image_latent.shape
    keep = loop_keep_mask(frames, h, w, motion, close_loop, anchor_first)
    image_frames = inverted_noise_init(image_latent, frames)
    base = image_frames.clone() if init == "inverted noise" else torch.zeros(frames, c, h, w)
    return AnchorPlan(image_frames, keep, blend(base, image_frames, keep),
                      concat_layout(image_latent, frames, layout))
