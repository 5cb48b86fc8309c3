"""Salient-object masks without learned weights (for LoopAnimate's FGSM, Eq. 9-10: the region allowed to move).

LoopAnimate gets M0 = SOD(F0) from a trained salient-object detector; this pack has no downloadable weights, so the
detector here is classical:

1. saliency map = minimum barrier distance to the image border (Zhang et al. 2015, FastMBD raster scans; a pixel is
   salient when every path from it to the border must cross a large colour barrier) + border-colour contrast
   (MB+'s backgroundness: Mahalanobis distance to the colours of each border strip, the most deviant strip dropped
   because the object may touch it), smoothed and contrast-stretched;
2. threshold (Otsu on the map, or a fixed level);
3. GrabCut (OpenCV) in a band around the thresholded mask's boundary snaps it to the image's colour edges;
4. clean-up: holes filled, opened/closed, components smaller than `min_area` dropped;
5. on a video batch, motion counts too: the map is weighted by how much each pixel moves against the camera's own
   motion (dense optical flow minus a RANSAC homography fitted to it), because the object a video is about is
   usually the one that moves; frames that do not move keep the still-image map;
6. on a video batch the maps are smoothed over time before thresholding, and the binary masks are voted over a
   3-frame window, so the mask does not flicker.

All functions take and return numpy arrays; `salient_masks` works on ComfyUI-style torch batches [B,H,W,C].
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..validation import image_batch

WORK_SIZE = 256  # the long side the maps are computed at (speed; masks are upsampled to the input size)


def _to_work(rgb: np.ndarray, work_size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = work_size / max(h, w)
    if scale >= 1.0:
        return rgb.copy()
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _normalize(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    if hi - lo < 1e-12:
        return np.zeros_like(x, dtype=np.float32)
    return ((x - lo) / (hi - lo)).astype(np.float32)


def minimum_barrier_distance(channel: np.ndarray, passes: int = 3) -> np.ndarray:
    """Approximate minimum barrier distance from every pixel to the image border (seeds), per channel.

    The barrier of a path is max - min of the values along it; raster scans (down, right, up, left) relax each pixel
    from its neighbour, keeping the running max/min of the best path (FastMBD, Zhang et al., ICCV 2015).
    `channel` is [h,w] or [h,w,c]; channels are independent and scanned together (the same numpy calls per row for
    all of them), and the result has the input's shape.
    """
    img = channel.astype(np.float32)
    h, w = img.shape[:2]
    # state[0] = barrier of the best path so far, state[1] / state[2] = its running max / min.
    state = np.stack([np.full(img.shape, np.inf, dtype=np.float32), img, img])
    state[0, 0] = state[0, -1] = 0.0
    state[0, :, 0] = state[0, :, -1] = 0.0

    def scan(st, im, order):
        """Relax line i of `st` from line i-1 (or i+1) along the first image axis."""
        for i, prev in order:
            hi = np.maximum(st[1, prev], im[i])
            lo = np.minimum(st[2, prev], im[i])
            cand = np.stack([hi - lo, hi, lo])
            st[:, i] = np.where(cand[0] < st[0, i], cand, st[:, i])

    cols = state.swapaxes(1, 2)  # a view: column scans write into `state`
    img_t = img.swapaxes(0, 1)
    down = [(y, y - 1) for y in range(1, h)]
    up = [(y, y + 1) for y in range(h - 2, -1, -1)]
    right = [(x, x - 1) for x in range(1, w)]
    left = [(x, x + 1) for x in range(w - 2, -1, -1)]
    for _ in range(passes):
        scan(state, img, down)
        scan(cols, img_t, right)
        scan(state, img, up)
        scan(cols, img_t, left)
    return state[0]


def _border_contrast(lab: np.ndarray, frac: float = 0.08) -> np.ndarray:
    """MB+ backgroundness: Mahalanobis colour distance to each border strip; the most deviant strip is dropped."""
    h, w, _ = lab.shape
    bh, bw = max(2, round(h * frac)), max(2, round(w * frac))
    strips = [lab[:bh].reshape(-1, 3), lab[-bh:].reshape(-1, 3),
              lab[:, :bw].reshape(-1, 3), lab[:, -bw:].reshape(-1, 3)]
    flat = lab.reshape(-1, 3)
    maps = []
    for s in strips:
        mean = s.mean(0)
        spread = np.cov(s.T) if len(s) > 1 else np.zeros((3, 3))  # one pixel (a 1 x N frame's strip): no spread
        cov = spread + np.eye(3) * 1e-2
        inv = np.linalg.inv(cov)
        d = flat - mean
        m = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, inv, d), 0.0))
        maps.append(_normalize(m.reshape(h, w)))
    maps = np.stack(maps)
    return _normalize(maps.sum(0) - maps.max(0))


def saliency_cues(rgb: np.ndarray, work_size: int = WORK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The two raw cues at the working resolution: minimum barrier distance and border-colour contrast, in [0, 1]."""
    small = _to_work(np.clip(rgb, 0.0, 1.0).astype(np.float32), work_size)
    small = cv2.GaussianBlur(small, (0, 0), 1.0)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)  # L in [0,100], a,b in about [-127,127]
    mbd = minimum_barrier_distance(lab).sum(-1)
    return _normalize(mbd), _border_contrast(lab)


def combine_cues(mbd: np.ndarray, contrast: np.ndarray, centre_sigma: float = 0.5, gain: float = 10.0,
                 mbd_weight: float = 2.0) -> np.ndarray:
    """MB+ post-processing: weighted sum, edge-preserving smoothing, centre bias, sigmoid contrast stretch."""
    h, w = mbd.shape
    sal = mbd_weight * mbd + contrast
    # Smooth inside regions but keep edges: a morphological open/close then a small blur.
    k = max(3, int(round(0.02 * max(h, w))) | 1)
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    sal = cv2.morphologyEx(_normalize(sal), cv2.MORPH_OPEN, ker)
    sal = cv2.morphologyEx(sal, cv2.MORPH_CLOSE, ker)
    # Centre bias (MB+): a broad Gaussian; the object is rarely hugging a corner.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    centre = np.exp(-(((yy - h / 2) / (centre_sigma * h)) ** 2 + ((xx - w / 2) / (centre_sigma * w)) ** 2) / 2.0)
    sal = _normalize(_normalize(sal) * centre)
    # Contrast enhancement: a sigmoid around the map's mean level.
    sal = 1.0 / (1.0 + np.exp(-gain * (sal - max(0.2, float(sal.mean())))))
    return _normalize(sal)


def saliency_map(rgb: np.ndarray, work_size: int = WORK_SIZE) -> np.ndarray:
    """Saliency map in [0, 1] at the working resolution (long side `work_size`) for an RGB float image in [0, 1]."""
    return combine_cues(*saliency_cues(rgb, work_size))


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1]."""
    u8 = np.clip(values * 255.0, 0, 255).astype(np.uint8)
    t, _ = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return float(t) / 255.0


def grabcut_refine(rgb_small: np.ndarray, coarse: np.ndarray, band: float = 0.08, iterations: int = 2) -> np.ndarray:
    """GrabCut in a band around a coarse mask's boundary; returns a bool mask.

    Far inside the coarse mask is fixed foreground, far outside fixed background, and a band of `band` x the long
    side on each side of the boundary is left to GrabCut's colour models, so the edge snaps to the image's colour
    edges without the mask leaking into similar-coloured background (on the SOD sample an unrestricted GrabCut
    lowered mean IoU; the band raised it, see docs/saliency-eval.md). Two GrabCut iterations score as well as four
    on the dev images and take about 20% less time. OpenCV's RNG (GrabCut's k-means start) is seeded, so the same
    image always gives the same mask.
    """
    fg = coarse.astype(bool)
    if fg.all() or not fg.any():
        return fg
    r = max(1, int(round(band * max(fg.shape))))
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    u8 = fg.astype(np.uint8)
    gc = np.full(fg.shape, cv2.GC_BGD, dtype=np.uint8)
    gc[cv2.dilate(u8, ker) > 0] = cv2.GC_PR_BGD
    gc[fg] = cv2.GC_PR_FGD
    gc[cv2.erode(u8, ker) > 0] = cv2.GC_FGD
    if not (gc == cv2.GC_BGD).any() and not (gc == cv2.GC_PR_BGD).any():
        return fg
    bgd = np.zeros((1, 65), np.float64)
    fgd = np.zeros((1, 65), np.float64)
    img8 = np.clip(rgb_small * 255.0, 0, 255).astype(np.uint8)
    cv2.setRNGSeed(0)
    try:
        cv2.grabCut(img8, gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # a colour model with too few samples: keep the coarse mask
        return fg
    return (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)


def clean_mask(mask: np.ndarray, min_area: float = 0.01, fill_holes: bool = True) -> np.ndarray:
    """Open/close, drop components smaller than `min_area` (fraction of the image), fill holes. Bool in, bool out."""
    h, w = mask.shape
    k = max(3, int(round(0.01 * max(h, w))) | 1)
    ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, ker)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, ker)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = np.zeros(n, dtype=bool)
    if n > 1:
        areas = stats[1:, cv2.CC_STAT_AREA]
        keep[1:] = areas >= min_area * h * w
        if not keep.any():  # never drop everything: keep the largest component
            keep[1 + int(np.argmax(areas))] = True
    m = keep[labels]
    if fill_holes:
        inv = (~m).astype(np.uint8)
        n2, lab2, _, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
        border_labels = set(np.unique(np.concatenate([lab2[0], lab2[-1], lab2[:, 0], lab2[:, -1]])).tolist())
        holes = np.isin(lab2, [i for i in range(1, n2) if i not in border_labels])
        m = m | holes
    return m


def _smooth_over_time(maps: np.ndarray, strength: float) -> np.ndarray:
    """Forward-backward exponential smoothing of a [T,h,w] stack (strength 0 = none, toward 1 = very smooth)."""
    if strength <= 0 or len(maps) < 2:
        return maps
    a = 1.0 - float(strength)
    fwd = maps.copy()
    for t in range(1, len(maps)):
        fwd[t] = a * maps[t] + (1 - a) * fwd[t - 1]
    bwd = maps.copy()
    for t in range(len(maps) - 2, -1, -1):
        bwd[t] = a * maps[t] + (1 - a) * bwd[t + 1]
    return 0.5 * (fwd + bwd)


# px at the working size: a frame whose residual motion stays below this at its 99th percentile counts as still
# (flow noise, the strip a pan reveals at the border); chosen on the dev sequences of DAVIS 2016 and on a panned still
# photo, whose residual reaches about 2 px there (docs/saliency-eval.md)
MIN_MOTION = 3.0


def residual_motion(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel motion from frame a to frame b (RGB, same size) that the camera's motion does not explain, in px.

    Dense Farneback optical flow, then a homography fitted to it with RANSAC (the background / camera motion, which
    covers most of the frame); what is left is the objects' own motion.
    """
    ga = cv2.cvtColor(np.clip(a * 255.0, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(np.clip(b * 255.0, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    flow = cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 4, 15, 3, 5, 1.1, 0)
    h, w = ga.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    src = np.stack([xx.ravel(), yy.ravel()], 1)
    dst = src + flow.reshape(-1, 2)
    pick = np.random.default_rng(0).choice(len(src), min(len(src), 2000), replace=False)
    cv2.setRNGSeed(0)  # RANSAC's samples: the same frames always give the same result
    hom = None
    if len(pick) >= 4:
        hom, _ = cv2.findHomography(src[pick], dst[pick], cv2.RANSAC, 1.0)
    if hom is None:
        hom = np.eye(3)
    camera = cv2.perspectiveTransform(src[None], hom)[0]
    return np.linalg.norm(dst - camera, axis=1).reshape(h, w).astype(np.float32)


def motion_cues(frames: list[np.ndarray], progress=None) -> list[np.ndarray]:
    """Motion weight in [0, 1] per frame of a video (RGB frames at the working size): residual motion against both
    neighbours (the smaller of the two, so a pixel must move relative to both), blurred, divided by its 90th
    percentile. A frame whose residual motion stays under MIN_MOTION (99th percentile) gets all ones: it carries no
    motion information, so its still-image map is used as it is. progress: optional callable(frames done)."""
    n = len(frames)
    out = []
    for i in range(n):
        nbrs = [j for j in (i - 1, i + 1) if 0 <= j < n]
        res = np.minimum.reduce([residual_motion(frames[i], frames[j]) for j in nbrs])
        res = cv2.GaussianBlur(res, (0, 0), 3.0)
        if float(np.percentile(res, 99)) < MIN_MOTION:
            out.append(np.ones_like(res))
        else:
            out.append(np.clip(res / max(float(np.percentile(res, 90)), 1e-6), 0.0, 1.0))
        if progress:
            progress(i + 1)
    return out


def salient_masks(
    images: torch.Tensor,
    threshold: float = -1.0,
    refine: bool = True,
    min_area: float = 0.01,
    dilate: int = 0,
    feather: float = 0.0,
    temporal_smoothing: float = 0.5,
    work_size: int = WORK_SIZE,
    motion: float = 1.0,
    progress=None,
) -> torch.Tensor:
    """Salient-object masks for an IMAGE batch [B,H,W,C] (float, 0..1, C = 3 or 4, alpha ignored; checked by
    validation.image_batch, which names `images`) -> MASK [B,H,W] float in [0, 1].

    threshold: saliency level in (0, 1], or < 0 for Otsu per frame. refine: GrabCut refinement. min_area: smallest
    kept component as a fraction of the image. dilate: grow the mask by this many pixels (output resolution).
    feather: Gaussian soft edge sigma in pixels (0 = hard mask). temporal_smoothing: 0..0.95, how much the saliency
    maps of a video batch are smoothed over time (and, above 0, a 3-frame majority vote on the masks). motion: 0..1,
    on a video batch how strongly the map is weighted by the frame's own motion (0 = frames treated as stills).
    progress: optional callable(done, total).
    """
    images = image_batch(images, "images", channels=(3, 4), rgb=True)
    b, h, w = images.shape[:3]
    frames = np.clip(images.detach().float().cpu().numpy(), 0.0, 1.0)
    motion = min(max(float(motion), 0.0), 1.0)
    use_motion = motion > 0 and b >= 2
    total = b * (3 if use_motion else 2)  # maps, motion cues, masks
    smalls = [_to_work(f, work_size) for f in frames]
    maps = []
    for i, s in enumerate(smalls):
        maps.append(saliency_map(s, work_size))
        if progress:
            progress(i + 1, total)
    if use_motion:
        cues = motion_cues(smalls, progress=(lambda done: progress(b + done, total)) if progress else None)
        weighted = [m * ((1.0 - motion) + motion * c) for m, c in zip(maps, cues, strict=False)]
        # where nothing salient moves the product vanishes: keep the still-image map for that frame
        maps = [_normalize(wm) if wm.max() > 1e-3 else m for m, wm in zip(maps, weighted, strict=False)]
    maps = _smooth_over_time(np.stack(maps), min(max(temporal_smoothing, 0.0), 0.95))
    masks = []
    for i, (s, m) in enumerate(zip(smalls, maps, strict=False)):
        t = otsu_threshold(m) if threshold <= 0 else float(threshold)
        mk = clean_mask(m >= t, min_area=min_area)
        if refine:
            mk = clean_mask(grabcut_refine(s, mk), min_area=min_area)
        masks.append(mk)
        if progress:
            progress(total - b + i + 1, total)
    masks = np.stack(masks)
    if temporal_smoothing > 0 and b >= 3:  # 3-frame majority vote against single-frame flicker
        padded = np.concatenate([masks[:1], masks, masks[-1:]]).astype(np.uint8)
        masks = (padded[:-2] + padded[1:-1] + padded[2:]) >= 2
    out = np.empty((b, h, w), dtype=np.float32)
    for i, mk in enumerate(masks):
        full = cv2.resize(mk.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
        full = full.astype(np.float32)
        if dilate > 0:
            ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
            full = cv2.dilate(full, ker)
        if feather > 0:
            full = cv2.GaussianBlur(full, (0, 0), float(feather))
        out[i] = np.clip(full, 0.0, 1.0)
    return torch.from_numpy(out)


def mask_preview(images: torch.Tensor, masks: torch.Tensor, color=(1.0, 0.2, 0.2), alpha: float = 0.5) -> torch.Tensor:
    """IMAGE batch showing the mask over the image: tinted inside, darkened outside, with the mask's outline."""
    imgs = torch.nan_to_num(images[..., :3].detach().float().cpu(), nan=0.0).clamp(0, 1).numpy()
    ms = masks.detach().float().cpu().numpy()
    out = np.empty_like(imgs)
    tint = np.asarray(color, dtype=np.float32)
    for i in range(len(imgs)):
        m = ms[min(i, len(ms) - 1)][..., None]
        img = imgs[i]
        shown = img * (1 - alpha * m) + tint * (alpha * m)
        shown = shown * (0.55 + 0.45 * m)  # darken the still region
        edge = cv2.morphologyEx((m[..., 0] >= 0.5).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        shown[edge > 0] = tint
        out[i] = shown
    return torch.from_numpy(np.clip(out, 0, 1).astype(np.float32))


def is_trivial_mask(mask: torch.Tensor) -> str | None:
    """'all zeros' / 'all ones' when a mask batch carries no region information, else None."""
    if float(mask.max()) <= 0.0:
        return "all zeros"
    if float(mask.min()) >= 1.0:
        return "all ones"
    return None


__all__ = [
    "clean_mask",
    "grabcut_refine",
    "is_trivial_mask",
    "mask_preview",
    "minimum_barrier_distance",
    "otsu_threshold",
    "saliency_map",
    "salient_masks",
]
