"""Input checks shared by the pack's nodes (IMAGE, LATENT, MASK, SVD conditioning) and the one centre-crop resize.

Every check raises ValueError with a message that names the input and says what would be valid. The IMAGE check is
the cores' own (validation.image_batch, given the input's name); `core_settings` gives a core's SettingError the
node's input name where the two differ. The resize is anchor/anchoring.center_resize: what ComfyUI's
common_upscale(..., crop="center") does for SVD_img2vid_Conditioning (images) and SVD's extra_conds (latents), so
anchors and segments land where SVD would put them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import comfy.model_base
import torch
from comfy.model_patcher import ModelPatcher

from ..anchor.anchoring import center_resize, mask_to_latent
from ..validation import SettingError
from ..validation import image_batch as image_batch  # the nodes' IMAGE check is the cores' one

# ComfyUI's socket types as the nodes receive them (for the type hints of node signatures)
Latent = dict[str, Any]  # LATENT: {"samples": [frames, 4, h, w], optional "noise_mask", "batch_index", ...}
Conditioning = list[list[Any]]  # CONDITIONING: [[embedding, {"concat_latent_image": ..., ...}], ...]


@contextlib.contextmanager
def core_settings(**input_names: str) -> Iterator[None]:
    """Run core calls whose SettingError should name the node's input: core setting name -> input name, e.g.
    `with core_settings(frames="samples"): chunks.check_chunking(...)`. Other errors pass unchanged."""
    try:
        yield
    except SettingError as error:
        if error.setting not in input_names:
            raise
        raise error.renamed(input_names[error.setting]) from error


def latent_samples(latent: Latent, name: str, min_frames: int = 1) -> torch.Tensor:
    """The samples of an SVD video LATENT input, [frames, 4, h, w] (SVD's 4 latent channels, none of the sizes 0),
    finite, with at least `min_frames` frames."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4 or samples.shape[1] != 4 or samples.numel() == 0:
        shape = tuple(samples.shape) if isinstance(samples, torch.Tensor) else None
        raise ValueError(f"{name}: expected an SVD video latent [frames, 4, h, w] (e.g. from "
                         f"SVD_img2vid_Conditioning or a KSampler), got {shape}")
    if samples.shape[0] < min_frames:
        raise ValueError(f"{name}: {samples.shape[0]} frame(s); it needs at least {min_frames} frames")
    if not torch.isfinite(samples).all():
        raise ValueError(f"{name}: the latent contains NaN or infinite values; sample or encode it again")
    return samples


def latent_mask(mask: torch.Tensor, height: int, width: int, name: str, what_if_empty: str) -> torch.Tensor:
    """A MASK input in latent space [B, 1, height, width] (centre crop, area), refused when all zeros."""
    m = mask_to_latent(mask, height, width, name)
    if float(m.max()) <= 0.0:
        raise ValueError(f"{name}: the mask is all zeros, so {what_if_empty}; leave it unconnected or mark a region")
    return m


def _concat_latent(entry: list[Any], name: str) -> torch.Tensor | None:
    """One conditioning entry's image latent (concat_latent_image), a 4-D tensor, or None when it has none."""
    z = entry[1].get("concat_latent_image") if len(entry) > 1 else None
    if z is not None and (not isinstance(z, torch.Tensor) or z.ndim != 4):
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"{name}: concat_latent_image has shape {shape}, expected [1, 4, h, w]")
    return z


def image_latent_from_conditioning(conditioning: Conditioning | None, name: str) -> torch.Tensor:
    """The image latent [1, 4, h, w] that SVD_img2vid_Conditioning put into `conditioning` (concat_latent_image)."""
    for entry in conditioning or []:
        z = _concat_latent(entry, name)
        if z is not None:
            return z[:1]
    raise ValueError(f"{name}: no concat_latent_image in this conditioning; connect the positive output of "
                     f"SVD_img2vid_Conditioning")


def check_latent_fits(z: torch.Tensor, like: torch.Tensor, name: str) -> None:
    """A latent [B, C, h, w] with the video latent's channels and finite values (any size: it is resized)."""
    if z.ndim != 4 or z.shape[1] != like.shape[1]:
        raise ValueError(f"{name}: latent {tuple(z.shape)} does not have the video's {like.shape[1]} channels")
    if not torch.isfinite(z).all():
        raise ValueError(f"{name}: the latent contains NaN or infinite values")


def fit_latent(z: torch.Tensor, like: torch.Tensor, name: str) -> torch.Tensor:
    """An anchor latent resized (centre crop, bilinear) to the video latent's size, as SVD's extra_conds does."""
    check_latent_fits(z, like, name)
    return center_resize(z.to(like.dtype), like.shape[-2], like.shape[-1])


def check_concat_latents(conditioning: Conditioning | None, like: torch.Tensor, name: str) -> None:
    """Every image latent (concat_latent_image) of an SVD conditioning fits the video latent `like`: a node that
    gives the conditioning its own concat layout refuses, before it plans anything, one that could not be replaced."""
    for entry in conditioning or []:
        z = _concat_latent(entry, name)
        if z is not None:
            check_latent_fits(z[:1], like, f"{name}: concat_latent_image")


def check_svd_resizes(conditioning: Conditioning | None, like: torch.Tensor, name: str, like_name: str) -> None:
    """SVD (core's extra_conds) resizes the conditioning's image latent to the video latent `like` with a centre crop
    (comfy.utils.common_upscale); refuse, naming both inputs, the aspect ratios where that crop rounds to 0 px, which
    would otherwise fail inside torch when the sampler runs."""
    h, w = like.shape[-2:]
    for entry in conditioning or []:
        z = _concat_latent(entry, name)
        if z is None or tuple(z.shape[-2:]) == (h, w):
            continue
        old_h, old_w = z.shape[-2:]
        old_aspect, new_aspect = old_w / old_h, w / h
        kept_w = old_w - 2 * round((old_w - old_w * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 1
        kept_h = old_h - 2 * round((old_h - old_h * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 1
        if min(kept_w, kept_h) < 1:
            raise ValueError(f"{like_name}: a {w}x{h} latent ({w * 8}x{h * 8} px) is too far from the aspect ratio of "
                             f"{name}'s image latent ({old_w}x{old_h}): SVD's centre crop of that image would keep 0 "
                             f"px; make the latent and the conditioning at the same width and height (e.g. both from "
                             f"SVD_img2vid_Conditioning)")


def fit_images(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """An IMAGE batch resized (centre crop, bilinear) to height x width, as SVD_img2vid_Conditioning does."""
    return center_resize(images.movedim(-1, 1), height, width).movedim(1, -1)


def require_svd(model: ModelPatcher, input_name: str = "model") -> None:
    """Refuse a MODEL that is not Stable Video Diffusion, naming what it is."""
    base = model.model
    if not isinstance(base, comfy.model_base.SVD_img2vid):
        unet = type(getattr(base, "diffusion_model", None)).__name__
        raise ValueError(f"{input_name}: VCUT needs a Stable Video Diffusion model (SVD, SVD-XT, SVD-XT 1.1, loaded "
                         f"with ImageOnlyCheckpointLoader), got {type(base).__name__} with a {unet} diffusion model")
