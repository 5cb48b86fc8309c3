"""Mean IoU of the Salient Mask core against ground truth, side by side with two trivial baselines.

Usage (from the repo root):
    .venv/bin/python bench/saliency_eval.py --data /work/saliency-data/SOD [--limit N] [--out results.json]

--data holds images/<id>.jpg|png and gt/<id>.png (binary, object > 127). Nothing is downloaded here; see
docs/saliency-eval.md for where the sample came from. Methods, all scored per image as IoU with the GT, then averaged:
  ellipse-0.30/0.35/0.40  centred ellipse, semi-axes = frac * (W, H)
  spectral-residual+otsu  Hou & Zhang 2007 map, Otsu threshold
  ours-map+otsu           our saliency map, Otsu threshold, cleaned (no GrabCut)
  ours                    the node's default: map + Otsu + GrabCut + clean-up
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
import types

import cv2
import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if "vcut" not in sys.modules:  # import the pack as the package `vcut` without running its ComfyUI __init__
    pkg = types.ModuleType("vcut")
    pkg.__path__ = [str(ROOT)]
    sys.modules["vcut"] = pkg

from vcut.loop.saliency import (  # noqa: E402
    centred_ellipse_mask, clean_mask, iou, otsu_threshold, saliency_map, salient_masks, spectral_residual_map,
)


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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=pathlib.Path)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", type=pathlib.Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    scores: dict[str, list[float]] = {}
    t0 = time.time()
    n = 0
    for name, img, gt in load_pairs(args.data):
        h, w = gt.shape
        res = {}
        for frac in (0.30, 0.35, 0.40):
            res[f"ellipse-{frac:.2f}"] = iou(centred_ellipse_mask(h, w, frac), gt)
        sr = spectral_residual_map(img)
        res["spectral-residual+otsu"] = iou(sr >= otsu_threshold(sr), gt)
        m = saliency_map(img)
        coarse = clean_mask(m >= otsu_threshold(m))
        coarse = cv2.resize(coarse.astype(np.float32), (w, h)) >= 0.5
        res["ours-map+otsu"] = iou(coarse, gt)
        ours = salient_masks(torch.from_numpy(img)[None])[0].numpy() >= 0.5
        res["ours"] = iou(ours, gt)
        for k, v in res.items():
            scores.setdefault(k, []).append(v)
        n += 1
        if args.limit and n >= args.limit:
            break
    summary = {k: float(np.mean(v)) for k, v in scores.items()}
    print(f"{n} images from {args.data} in {time.time() - t0:.1f} s")
    for k, v in summary.items():
        print(f"  {k:24s} mean IoU {v:.3f}   median {np.median(scores[k]):.3f}")
    if args.out:
        args.out.write_text(json.dumps({"images": n, "mean_iou": summary, "per_image": scores}, indent=1))


if __name__ == "__main__":
    main()
