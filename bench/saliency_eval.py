"""Salient Mask quality on real photos with ground truth, side by side with baselines, on a dev / held-out split.

Usage (from the repo root):
    .venv/bin/python bench/saliency_eval.py --data /work/saliency-data/SOD [--subset all|dev|held-out] [--limit N]
                                            [--out results.json]
    .venv/bin/python bench/saliency_eval.py --data /work/saliency-data/DAVIS16 --dev-sequences 5 --video
    .venv/bin/python bench/saliency_eval.py --time      # ms per 512x512 frame of the node's default pipeline

--data holds images/<id>.jpg|png and gt/<id>.png (binary, object > 127). Nothing is downloaded here; see
docs/saliency-eval.md for where the sample came from.

Split: the images sorted by id; the first DEV_COUNT (100) are the dev subset, the only images any parameter of
loop/saliency.py was chosen on; the rest are held out (never used for tuning). Every method is scored on both.
With --dev-sequences K (video frames named <sequence>_<frame>) the split is by sequence instead: the frames of the
first K sequences (sorted by name) are the dev subset, so no held-out frame shares a sequence with a dev frame.

--video (needs <sequence>_<frame> names): also runs the node on each sequence's frames as one batch, as it runs on
a video (temporal smoothing and the motion cue on), scored per frame as ours-video, and the same without the motion
cue (motion=0) as ours-video-no-motion; and reports flicker: the mean IoU of consecutive masks of a sequence, for
the ground truth, for ours frame by frame and for both video runs.

Methods (each gives a binary mask; IoU, F-beta (beta^2 = 0.3) and MAE against the GT mask, averaged per image):
  ellipse-0.30/0.35/0.40  centred ellipse, semi-axes = frac * (W, H)
  spectral-residual+otsu  Hou & Zhang 2007 map, Otsu threshold
  rbd+otsu                robust background detection (Zhu et al. CVPR 2014) on SLIC superpixels, Otsu, cleaned
  gmr+otsu                graph-based manifold ranking (Yang et al. CVPR 2013) on the same superpixels, Otsu, cleaned
  ours-map+otsu           our saliency map (MBD + border contrast), Otsu threshold, cleaned (no GrabCut)
  ours                    the node's default: salient_masks(...) = map + Otsu + band GrabCut + clean-up
RBD and GMR are implemented here (not in the node) because they did not beat our map on the dev subset.

--reference-maps DIR (optional): DIR/<method>/<id>.png are saliency maps published by other detectors for the same
images (for SOD: three supervised deep detectors, see docs/saliency-eval.md); each is scored as ref-<method>+otsu
(Otsu threshold, no clean-up), to show what a learned detector reaches on this sample.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import cv2
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from pack_import import SHARED_DATA, register_pack

register_pack()
from saliency_baselines import centred_ellipse_mask, iou, spectral_residual_map  # noqa: E402  (after the sys.path / package setup above)

from vcut.loop.saliency import (  # noqa: E402  (after the sys.path / package setup above)
    _to_work,
    clean_mask,
    otsu_threshold,
    saliency_map,
    salient_masks,
)

DEV_COUNT = 100
WORK = 256  # superpixel methods run at the same working size as ours


def load_pairs(data: pathlib.Path):
    for gt_path in sorted((data / "gt").glob("*.png")):
        img_path = next((p for p in (data / "images" / (gt_path.stem + e) for e in (".jpg", ".png")) if p.exists()), None)
        if img_path is None:
            continue
        gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE) > 127
        img = cv2.cvtColor(cv2.imread(str(img_path)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
        if img.shape[:2] != gt.shape and img.shape[:2] == gt.shape[::-1]:
            # The BSDS500 copy stores portrait photos rotated 90 degrees clockwise; the SOD masks are upright.
            img = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
        if img.shape[:2] != gt.shape:
            print(f"skip {gt_path.stem}: image {img.shape[:2]} vs gt {gt.shape}", file=sys.stderr)
            continue
        yield gt_path.stem, img, gt


# ---- superpixel baselines (SLIC, RBD, GMR) ----

def slic(lab: np.ndarray, n_segments: int = 250, compactness: float = 10.0, iters: int = 5) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012), vectorised: k-means in (L,a,b,y,x), each pixel compared with the
    centres of the 3x3 grid cells around its own cell. Returns labels [h,w] numbered 0..n-1."""
    h, w, _ = lab.shape
    step = max(4, round(float(np.sqrt(h * w / n_segments))))
    gh, gw = max(1, int(np.ceil(h / step))), max(1, int(np.ceil(w / step)))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy = np.clip((np.arange(gh) + 0.5) * step, 0, h - 1).astype(int)
    cx = np.clip((np.arange(gw) + 0.5) * step, 0, w - 1).astype(int)
    gy, gx = np.meshgrid(cy, cx, indexing="ij")
    centres = np.concatenate([lab[gy, gx], gy[..., None], gx[..., None]], -1).reshape(-1, 5).astype(np.float32)
    feats = np.concatenate([lab, yy[..., None], xx[..., None]], -1).reshape(-1, 5)
    cell_y = np.minimum(yy // step, gh - 1).astype(int)
    cell_x = np.minimum(xx // step, gw - 1).astype(int)
    cands = np.stack([(np.clip(cell_y + dy, 0, gh - 1) * gw + np.clip(cell_x + dx, 0, gw - 1)).ravel()
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    m2 = (compactness / step) ** 2
    for _ in range(iters):
        best, best_d = None, None
        for cand in cands:
            c = centres[cand]
            d = ((feats[:, :3] - c[:, :3]) ** 2).sum(1) + m2 * ((feats[:, 3:] - c[:, 3:]) ** 2).sum(1)
            if best is None:
                best, best_d = cand.copy(), d
            else:
                closer = d < best_d
                best[closer], best_d[closer] = cand[closer], d[closer]
        count = np.bincount(best, minlength=len(centres)).astype(np.float32)
        used = count > 0
        for j in range(5):
            centres[used, j] = np.bincount(best, weights=feats[:, j], minlength=len(centres))[used] / count[used]
    return np.unique(best, return_inverse=True)[1].reshape(h, w).astype(np.int32)


def superpixel_graph(lab: np.ndarray, labels: np.ndarray):
    """Mean Lab colour, mean (y, x) in [0,1], adjacency and border flags of the superpixels."""
    h, w, _ = lab.shape
    n = int(labels.max()) + 1
    flat = labels.ravel()
    count = np.bincount(flat, minlength=n).astype(np.float64)
    col = np.stack([np.bincount(flat, weights=lab[..., j].ravel(), minlength=n) for j in range(3)], 1) / count[:, None]
    yy, xx = np.mgrid[0:h, 0:w]
    pos = np.stack([np.bincount(flat, weights=(yy / h).ravel(), minlength=n),
                    np.bincount(flat, weights=(xx / w).ravel(), minlength=n)], 1) / count[:, None]
    adj = np.zeros((n, n), bool)
    adj[labels[:, :-1].ravel(), labels[:, 1:].ravel()] = True
    adj[labels[:-1].ravel(), labels[1:].ravel()] = True
    adj |= adj.T
    np.fill_diagonal(adj, False)
    border = np.zeros(n, bool)
    border[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True
    return col, pos, adj, border


def _otsu_cut(values: np.ndarray) -> float:
    u8 = np.clip(values * 255, 0, 255).astype(np.uint8).reshape(-1, 1)
    return cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0] / 255.0


def rbd_saliency(col, pos, adj, border, clip=3.0, geo_sigma=7.0, bnd_sigma=1.0, spa_sigma=0.4, mu=0.1,
                 bg_lambda=5.0, clr_sigma=10.0) -> np.ndarray:
    """Robust background detection (Zhu et al., CVPR 2014), parameters as in the authors' code."""
    n = len(col)
    d_app = np.sqrt(((col[:, None] - col[None]) ** 2).sum(-1))
    linked = adj.copy()
    linked[np.ix_(border, border)] = True  # boundary superpixels linked to each other
    np.fill_diagonal(linked, False)
    geo = np.where(linked, np.maximum(d_app - clip, 0.0), np.inf)
    np.fill_diagonal(geo, 0.0)
    for k in range(n):  # Floyd-Warshall geodesic distances
        np.minimum(geo, geo[:, k:k + 1] + geo[k:k + 1], out=geo)
    span = np.exp(-geo ** 2 / (2 * geo_sigma ** 2))
    bnd_con = span[:, border].sum(1) / np.sqrt(span.sum(1))  # Eq. 3: Len_bnd / sqrt(Area)
    w_bg = 1 - np.exp(-bnd_con ** 2 / (2 * bnd_sigma ** 2))  # Eq. 7
    w_spa = np.exp(-((pos[:, None] - pos[None]) ** 2).sum(-1) / (2 * spa_sigma ** 2))
    w_ctr = (d_app * w_spa) @ w_bg  # Eq. 8: background-weighted contrast
    w_ctr = (w_ctr - w_ctr.min()) / (np.ptp(w_ctr) + 1e-9)
    w_fg = np.where(w_ctr < _otsu_cut(w_ctr), 0.0, w_ctr)
    w_ij = np.where(adj, np.exp(-d_app ** 2 / (2 * clr_sigma ** 2)) + mu, 0.0)
    lap = np.diag(w_ij.sum(1)) - w_ij
    # Eq. 9: min sum w_bg s^2 + sum w_fg (1-s)^2 + sum w_ij (s_i-s_j)^2 -> a linear system
    s = np.linalg.solve(np.diag(bg_lambda * w_bg + w_fg) + lap + 1e-9 * np.eye(n), w_fg)
    return np.clip(s, 0.0, 1.0)


def gmr_saliency(col, adj, labels, alpha=0.99, theta=10.0) -> np.ndarray:
    """Graph-based manifold ranking (Yang et al., CVPR 2013): rank against each border side (Eq. 3-5), then against
    the foreground queries of that first stage."""
    n = len(col)
    graph = adj | ((adj.astype(np.int32) @ adj.astype(np.int32)) > 0)  # neighbours and their neighbours
    sides = [np.unique(labels[0]), np.unique(labels[-1]), np.unique(labels[:, 0]), np.unique(labels[:, -1])]
    border = np.unique(np.concatenate(sides))
    graph[np.ix_(border, border)] = True
    np.fill_diagonal(graph, False)
    d = np.sqrt(((col[:, None] - col[None]) ** 2).sum(-1))
    weights = np.where(graph, np.exp(-theta * d / (d[graph].max() + 1e-9)), 0.0)
    ranker = np.linalg.inv(np.diag(weights.sum(1)) - alpha * weights)  # f* = (D - alpha W)^-1 y
    np.fill_diagonal(ranker, 0.0)
    def norm(f):
        return (f - f.min()) / (np.ptp(f) + 1e-9)
    stage1 = np.ones(n)
    for side in sides:
        y = np.zeros(n)
        y[side] = 1.0
        stage1 *= 1.0 - norm(ranker @ y)
    stage1 = norm(stage1)
    return norm(ranker @ (stage1 >= stage1.mean()).astype(np.float64))


def superpixel_maps(img: np.ndarray) -> dict[str, np.ndarray]:
    """RBD and GMR saliency maps at the working size."""
    small = cv2.GaussianBlur(_to_work(img, WORK), (0, 0), 1.0)
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
    labels = slic(lab)
    col, pos, adj, border = superpixel_graph(lab, labels)
    return {"rbd": rbd_saliency(col, pos, adj, border)[labels].astype(np.float32),
            "gmr": gmr_saliency(col, adj, labels)[labels].astype(np.float32)}


# ---- scoring ----

def f_beta(mask: np.ndarray, gt: np.ndarray, beta2: float = 0.3) -> float:
    """F-measure with beta^2 = 0.3 (the salient-object literature's weighting toward precision)."""
    tp = float(np.logical_and(mask, gt).sum())
    if tp == 0:
        return 0.0
    p, r = tp / mask.sum(), tp / gt.sum()
    return (1 + beta2) * p * r / (beta2 * p + r)


def score(mask: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    return {"iou": iou(mask, gt), "f": f_beta(mask, gt), "mae": float(np.mean(mask != gt))}


def to_size(mask: np.ndarray, shape) -> np.ndarray:
    h, w = shape
    return cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5


def reference_scores(ref_dir: pathlib.Path | None, name: str, gt: np.ndarray) -> dict[str, dict[str, float]]:
    """Scores of other detectors' published maps for this image (Otsu threshold), if given."""
    res = {}
    if ref_dir is None:
        return res
    for method_dir in sorted(p for p in ref_dir.iterdir() if p.is_dir()):
        path = method_dir / f"{name}.png"
        if not path.exists():
            continue
        m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
        if m.shape != gt.shape:
            m = cv2.resize(m, gt.shape[::-1], interpolation=cv2.INTER_LINEAR)
        res[f"ref-{method_dir.name}+otsu"] = score(m >= otsu_threshold(m), gt)
    return res


def evaluate(img: np.ndarray, gt: np.ndarray, keep: dict | None = None) -> dict[str, dict[str, float]]:
    """Scores of every method on one image; `keep` (optional) receives the node's mask as keep["ours"]."""
    h, w = gt.shape
    res = {}
    for frac in (0.30, 0.35, 0.40):
        res[f"ellipse-{frac:.2f}"] = score(centred_ellipse_mask(h, w, frac), gt)
    sr = spectral_residual_map(img)
    res["spectral-residual+otsu"] = score(sr >= otsu_threshold(sr), gt)
    for name, m in superpixel_maps(img).items():
        res[f"{name}+otsu"] = score(to_size(clean_mask(m >= otsu_threshold(m)), gt.shape), gt)
    m = saliency_map(img)
    res["ours-map+otsu"] = score(to_size(clean_mask(m >= otsu_threshold(m)), gt.shape), gt)
    ours = salient_masks(torch.from_numpy(img)[None])[0].numpy() >= 0.5
    res["ours"] = score(ours, gt)
    if keep is not None:
        keep["ours"] = ours
    return res


def sequence_of(name: str) -> str:
    """'<sequence>_<frame>' -> '<sequence>' (video samples such as DAVIS16/images/blackswan_00005.jpg)."""
    return name.rsplit("_", 1)[0]


def consecutive_iou(masks: list[np.ndarray]) -> list[float]:
    """IoU of each mask with the next one of the same sequence (1.0 = no change between frames)."""
    return [iou(a, b) for a, b in zip(masks[:-1], masks[1:], strict=False)]


def video_scores(frames: dict[str, dict[str, np.ndarray]], per_image: dict[str, dict]) -> dict[str, list[float]]:
    """Runs the node on each sequence as one batch (ours-video, added to per_image) and returns the consecutive-mask
    IoUs per frame pair for the ground truth, ours frame by frame, and ours-video."""
    flicker = {"gt": [], "ours": [], "ours-video": [], "ours-video-no-motion": []}
    for seq in sorted({sequence_of(n) for n in frames}):
        names = sorted(n for n in frames if sequence_of(n) == seq)
        batch = torch.from_numpy(np.stack([frames[n]["img"] for n in names]).astype(np.float32) / 255.0)
        flicker["gt"] += consecutive_iou([frames[n]["gt"] for n in names])
        flicker["ours"] += consecutive_iou([frames[n]["ours"] for n in names])
        for label, motion in (("ours-video", 1.0), ("ours-video-no-motion", 0.0)):
            video = salient_masks(batch, motion=motion).numpy() >= 0.5
            for n, m in zip(names, video, strict=False):
                per_image[n][label] = score(m, frames[n]["gt"])
            flicker[label] += consecutive_iou(list(video))
    return flicker


def summarise(per_image: dict[str, dict], names: list[str]) -> dict[str, dict[str, float]]:
    methods = next(iter(per_image.values())).keys() if per_image else []
    out = {}
    for meth in methods:
        vals = {k: [per_image[n][meth][k] for n in names] for k in ("iou", "f", "mae")}
        out[meth] = {"mean_iou": float(np.mean(vals["iou"])), "median_iou": float(np.median(vals["iou"])),
                     "mean_f": float(np.mean(vals["f"])), "mae": float(np.mean(vals["mae"]))}
    return out


def time_node(frames: int = 8, repeats: int = 2) -> dict[str, float]:
    """ms per 512x512 frame of salient_masks (default options, refine=False, and motion=0: no motion cue) on the
    shared astronaut photo, panned a little from frame to frame."""
    img = cv2.cvtColor(cv2.imread(str(SHARED_DATA / "photos" / "astronaut.png")), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (512, 512), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # a small pan so the frames differ like a video's
    batch = torch.from_numpy(np.stack([np.roll(img, 4 * t, axis=1) for t in range(frames)]))
    out = {}
    for label, kw in (("default", {}), ("refine=False", {"refine": False}), ("motion=0", {"motion": 0.0})):
        salient_masks(batch[:1], **kw)  # warm-up
        best = min(_timed(salient_masks, batch, **kw) for _ in range(repeats))
        out[label] = 1000.0 * best / frames
    return out


def _timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=pathlib.Path)
    ap.add_argument("--subset", choices=("all", "dev", "held-out"), default="all")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N images of the subset")
    ap.add_argument("--out", type=pathlib.Path)
    ap.add_argument("--reference-maps", type=pathlib.Path, help="DIR/<method>/<id>.png maps of other detectors")
    ap.add_argument("--time", action="store_true", help="only time the node's pipeline on 512x512 frames")
    ap.add_argument("--dev-sequences", type=int, default=0,
                    help="split by sequence: the first K sequences (names <sequence>_<frame>) are the dev subset")
    ap.add_argument("--video", action="store_true",
                    help="also run the node on each sequence as a video batch and report flicker")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if args.time:
        for k, v in time_node().items():
            print(f"salient_masks {k:13s} {v:7.1f} ms per 512x512 frame (8-frame batch, 1 thread)")
        return
    if args.data is None:
        ap.error("--data is required unless --time")
    names_sorted = sorted(p.stem for p in (args.data / "gt").glob("*.png"))
    if args.dev_sequences:
        dev_seqs = sorted({sequence_of(n) for n in names_sorted})[:args.dev_sequences]
        dev = {n for n in names_sorted if sequence_of(n) in dev_seqs}
        print(f"dev sequences: {', '.join(dev_seqs)} ({len(dev)} frames)")
    else:
        dev = set(names_sorted[:DEV_COUNT])
    wanted = {"all": set(names_sorted), "dev": dev, "held-out": set(names_sorted) - dev}[args.subset]
    per_image: dict[str, dict] = {}
    t0 = time.time()
    frames: dict[str, dict[str, np.ndarray]] = {}  # --video: uint8 frame, GT and our single-frame mask
    for name, img, gt in load_pairs(args.data):
        if name not in wanted:
            continue
        keep = {} if args.video else None
        per_image[name] = {**evaluate(img, gt, keep), **reference_scores(args.reference_maps, name, gt)}
        if keep is not None:
            frames[name] = {"img": np.round(img * 255).astype(np.uint8), "gt": gt, "ours": keep["ours"]}
        if args.limit and len(per_image) >= args.limit:
            break
    flicker = video_scores(frames, per_image) if args.video else {}
    groups = {"dev": [n for n in per_image if n in dev], "held-out": [n for n in per_image if n not in dev],
              "all": list(per_image)}
    summary = {g: summarise(per_image, names) for g, names in groups.items() if names}
    print(f"{len(per_image)} images from {args.data} in {time.time() - t0:.1f} s")
    for g, table in summary.items():
        print(f"[{g}: {len(groups[g])} images]")
        for meth, v in table.items():
            print(f"  {meth:24s} mean IoU {v['mean_iou']:.3f}  median {v['median_iou']:.3f}  "
                  f"F(b2=0.3) {v['mean_f']:.3f}  MAE {v['mae']:.3f}")
    flicker_summary = {k: float(np.mean(v)) for k, v in flicker.items() if v}
    for k, v in flicker_summary.items():
        print(f"consecutive-frame mask IoU, {k:20s} {v:.3f} ({len(flicker[k])} frame pairs)")
    if args.out:
        args.out.write_text(json.dumps({"images": len(per_image), "dev": sorted(dev & set(per_image)),
                                        "summary": summary, "flicker": flicker_summary,
                                        "per_image": per_image}, indent=1))


if __name__ == "__main__":
    main()
