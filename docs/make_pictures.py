"""Render the workflow thumbnails (workflows/<name>.jpg) and the README pictures (docs/img/*.png), and check the
example workflows' layout.

Every picture is made from the real photos and clips in ../shared/data with the pack's own core code (loop/, codec/,
cut/); no ComfyUI and no SVD weights are needed, so no picture shows SVD output: where a workflow's result would be a
generated video, the picture shows the input and what the pack's nodes do to it, and says so.

    .venv/bin/python docs/make_pictures.py            # check the workflows, render everything
    .venv/bin/python docs/make_pictures.py --check    # only check the workflows
"""
from __future__ import annotations

import argparse
import io
import json
import math
import re
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from clips import read_frames  # noqa: E402  (after the sys.path / package setup above)
from pack_import import SHARED_DATA, register_pack  # noqa: E402  (after the sys.path / package setup above)

register_pack()  # the pack as the package `vcut`, as ComfyUI and the tests import it
from vcut.anchor.anchoring import AnchorSchedule, frame_keep_mask, parse_frame_list  # noqa: E402  (after the sys.path / package setup above)
from vcut.anchor.plans import continuation_plan, frame_replace_plan  # noqa: E402  (after the sys.path / package setup above)
from vcut.cache.deepcache import full_steps  # noqa: E402  (after the sys.path / package setup above)
from vcut.codec import decode, encode, load_motion_vectors, residual_to_image, save_motion_vectors  # noqa: E402  (after the sys.path / package setup above)
from vcut.codec.visualize import flow_colours, motion_preview  # noqa: E402  (after the sys.path / package setup above)
from vcut.cut.schedule import CutSchedule, schedule_summary  # noqa: E402  (after the sys.path / package setup above)
from vcut.loop.alss import alss_indices, frames_needed  # noqa: E402  (after the sys.path / package setup above)
from vcut.loop.conditioning import loop_frame_count, loop_keep_mask, sdslc_layout  # noqa: E402  (after the sys.path / package setup above)
from vcut.loop.metrics import loop_metrics, render_plot  # noqa: E402  (after the sys.path / package setup above)
from vcut.loop.saliency import mask_preview, salient_masks  # noqa: E402  (after the sys.path / package setup above)
from vcut.video import compare  # noqa: E402  (after the sys.path / package setup above)
from vcut.video.segments import join_segments, joined_length, seam_report  # noqa: E402  (after the sys.path / package setup above)

WORKFLOWS, IMG = ROOT / "workflows", ROOT / "docs" / "img"
PHOTOS, VIDEO = SHARED_DATA / "photos", SHARED_DATA / "video"
BG, FG, DIM = (32, 33, 38), (235, 235, 235), (150, 150, 155)
GUIDED, UNGUIDED, ANCHOR, FREE = (230, 140, 50), (70, 130, 200), (90, 180, 100), (75, 75, 82)
THUMB = 512
TITLE_H = 30  # LiteGraph draws a node's title bar above its pos


# ---------------------------------------------------------------- workflow checks

def pack_display_names() -> dict[str, str]:
    """node_id -> display_name of the pack's nodes, read from nodes/*.py (no ComfyUI import)."""
    names = {}
    for path in (ROOT / "nodes").glob("*.py"):
        names.update(re.findall(r'node_id="(VCUT\w+)",\s*display_name="([^"]+)"', path.read_text()))
    return names


def _box(node) -> tuple[float, float, float, float]:
    """x0, y0, x1, y1 of a node on the canvas, title bar included."""
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_H, x + w, y + h


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def check_workflow(wf: dict, names: dict[str, str]) -> list[str]:
    """What a user opening the workflow would find off; [] when it is fine."""
    problems = []
    nodes = {n["id"]: n for n in wf["nodes"]}
    boxes = {i: _box(n) for i, n in nodes.items()}
    if wf.get("version") != 0.4:
        problems.append(f"version is {wf.get('version')}, expected 0.4")
    if wf.get("last_node_id") != max(nodes):
        problems.append(f"last_node_id {wf.get('last_node_id')} != largest node id {max(nodes)}")
    link_ids = [link[0] for link in wf["links"]]
    if len(set(link_ids)) != len(link_ids) or wf.get("last_link_id") != max(link_ids, default=0):
        problems.append(f"link ids not unique or last_link_id {wf.get('last_link_id')} != {max(link_ids, default=0)}")
    ids = sorted(nodes)
    for k, i in enumerate(ids):
        for j in ids[k + 1:]:
            if _overlap(boxes[i], boxes[j]):
                problems.append(f"nodes {i} and {j} overlap")
    for link_id, src, src_slot, dst, dst_slot, link_type in wf["links"]:
        s, d = boxes[src], boxes[dst]
        rightward = d[0] >= s[2]
        downward = abs(d[0] - s[0]) < 1 and d[1] >= s[3]  # same column, below
        if not (rightward or downward):
            problems.append(f"link {link_id} ({src} -> {dst}) runs right-to-left or upward")
        if nodes[src]["outputs"][src_slot]["type"] != link_type or nodes[dst]["inputs"][dst_slot]["type"] != link_type:
            problems.append(f"link {link_id}: slot types do not match {link_type}")
    groups = wf.get("groups", [])
    if not groups:
        problems.append("no groups")
    for g in groups:
        x, y, w, h = g["bounding"]
        gb = (x, y + 40, x + w, y + h)  # below the group's title
        inside = [i for i, b in boxes.items() if b[0] >= gb[0] and b[2] <= gb[2] and b[1] >= gb[1] and b[3] <= gb[3]]
        partial = [i for i, b in boxes.items() if i not in inside and _overlap(b, (x, y, x + w, y + h))]
        if not inside:
            problems.append(f"group '{g['title']}' frames no node")
        if partial:
            problems.append(f"group '{g['title']}' cuts through nodes {partial}")
    for k, a in enumerate(groups):
        for b in groups[k + 1:]:
            ax, ay, aw, ah = a["bounding"]
            bx, by, bw, bh = b["bounding"]
            if _overlap((ax, ay, ax + aw, ay + ah), (bx, by, bx + bw, by + bh)):
                problems.append(f"groups '{a['title']}' and '{b['title']}' overlap")
    notes = [n for n in wf["nodes"] if n["type"] in ("Note", "MarkdownNote")]
    if len(notes) != 1:
        problems.append(f"{len(notes)} notes, expected one")
    else:
        text = notes[0]["widgets_values"][0]
        types = {n["type"] for n in wf["nodes"]}
        if "ImageOnlyCheckpointLoader" in types and not re.search(r"svd(_xt)?\.safetensors", text):
            problems.append("the note does not say which checkpoint to load")
        for t, what in (("LoadImage", "image"), ("LoadVideo", "video")):
            if t in types and f"Load {what.capitalize()}" not in text:
                problems.append(f"the note does not say what to set in Load {what.capitalize()}")
        for node_id in sorted(types & set(names)):
            if names[node_id] not in text:
                problems.append(f"the note does not explain {names[node_id]}")
    ds = wf.get("extra", {}).get("ds")
    if not ds or not 0.2 <= ds.get("scale", 0) <= 1.5:
        problems.append(f"extra.ds missing or its scale is off: {ds}")
    else:  # the top-left of the graph is on screen: screen = (graph + offset) * scale
        x0 = min(b[0] for b in boxes.values())
        y0 = min([b[1] for b in boxes.values()] + [g["bounding"][1] for g in groups])
        sx, sy = (x0 + ds["offset"][0]) * ds["scale"], (y0 + ds["offset"][1]) * ds["scale"]
        if not (0 <= sx <= 200 and 0 <= sy <= 200):
            problems.append(f"extra.ds puts the graph's top-left at screen ({sx:.0f}, {sy:.0f})")
    return problems


def check_all() -> bool:
    names = pack_display_names()
    ok = True
    for path in sorted(WORKFLOWS.glob("*.json")):
        problems = check_workflow(json.loads(path.read_text()), names)
        thumb = path.with_suffix(".jpg")
        print(f"{path.name}: {'ok' if not problems else '; '.join(problems)}"
              f"{'' if thumb.exists() else ' (no thumbnail yet)'}")
        ok = ok and not problems
    return ok


# ---------------------------------------------------------------- drawing helpers

def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(f"/usr/share/fonts/truetype/dejavu/{name}", size)
    except OSError:
        return ImageFont.load_default(size)


def canvas(w: int, h: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new("RGB", (w, h), BG)
    return img, ImageDraw.Draw(img)


def header(d: ImageDraw.ImageDraw, title: str, sub: str) -> None:
    """A thumbnail's title line and the line saying what the picture shows."""
    d.text((14, 10), title, font=font(19, True), fill=FG)
    d.text((14, 35), sub, font=font(12), fill=DIM)


def pil(x) -> Image.Image:
    """float [0, 1] or uint8 HxWx3 (numpy or torch) -> PIL RGB."""
    a = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(a)


def fit(img: Image.Image, w: int, h: int) -> Image.Image:
    """Centre-crop to w:h and resize (what SVD_img2vid_Conditioning does to the input image)."""
    return ImageOps.fit(img, (w, h), Image.LANCZOS)


def paste(base: Image.Image, d: ImageDraw.ImageDraw, img: Image.Image, xy, label: str = "", outline=None) -> None:
    base.paste(img, xy)
    if outline:
        d.rectangle([xy[0] - 2, xy[1] - 2, xy[0] + img.width + 1, xy[1] + img.height + 1], outline=outline, width=2)
    if label:
        d.text((xy[0], xy[1] + img.height + 4), label, font=font(12), fill=DIM)


def photo(name: str) -> Image.Image:
    return Image.open(PHOTOS / name).convert("RGB")


def image_tensor(img: Image.Image) -> torch.Tensor:
    """PIL -> ComfyUI IMAGE [1, H, W, 3] float."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


def clip(name: str, count: int, start: int, width: int, step: int = 1) -> np.ndarray:
    """uint8 [count, h, width, 3]: every `step`-th frame of a shared clip from `start`, area-downscaled."""
    frames = read_frames(VIDEO / name, (count - 1) * step + 1, start)[::step]
    h = round(frames.shape[1] * width / frames.shape[2] / 2) * 2
    return np.stack([cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA) for f in frames])


def arrow(d: ImageDraw.ImageDraw, a, b, fill=FG, width: int = 2, head: int = 8) -> None:
    d.line([a, b], fill=fill, width=width)
    ang = math.atan2(b[1] - a[1], b[0] - a[0])
    pts = [b, (b[0] - head * math.cos(ang - 0.45), b[1] - head * math.sin(ang - 0.45)),
           (b[0] - head * math.cos(ang + 0.45), b[1] - head * math.sin(ang + 0.45))]
    d.polygon(pts, fill=fill)


def colour_wheel(size: int) -> Image.Image:
    """The legend of the vector colours: flow_colours of the vectors pointing from the centre to each pixel."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    rgb = flow_colours(np.stack([xx, yy], -1), (size - 1) / 2)
    rgb[np.hypot(xx, yy) > (size - 1) / 2] = BG
    return Image.fromarray(rgb)


def save_jpg(img: Image.Image, path: Path) -> None:
    img.save(path, "JPEG", quality=85, optimize=True)
    print(f"{path.relative_to(ROOT)}: {img.width}x{img.height}, {path.stat().st_size // 1024} KB")


def save_png(img: Image.Image, path: Path, limit_kb: int = 150) -> None:
    """PNG; photos are palette-quantised when the full-colour file would exceed `limit_kb`."""
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    if buf.tell() > limit_kb * 1024:
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    img.save(path, "PNG", optimize=True)
    print(f"{path.relative_to(ROOT)}: {img.width}x{img.height}, {path.stat().st_size // 1024} KB")


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0) -> torch.Tensor:
    """The karras schedule (SVD's sigma range) with the final 0, as ComfyUI's KSampler builds it."""
    ramp = torch.linspace(0, 1, steps)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, torch.zeros(1)])


def anchor_grid(base, d, box, frames: int, anchored: list[int], steps: int, fraction: float, thumb=None) -> None:
    """STIV frame replacement as a grid: columns = latent frames, rows = sampling steps; a cell is the anchor (at the
    step's noise level) where the keep mask is 1 and the step is anchored (AnchorSchedule), else the free latent."""
    x0, y0, x1, y1 = box
    sigmas = karras_sigmas(steps)
    sched = AnchorSchedule(sigmas, fraction)
    keep = frame_keep_mask(frames, anchored, 1, 1)  # the node's keep mask, at 1x1 latent pixels
    cw, ch = (x1 - x0 - 40) / frames, (y1 - y0 - 16) / (steps + 1)
    f = font(10)
    for t in range(frames):
        d.text((x0 + 40 + t * cw + cw / 2, y0), str(t), font=f, fill=DIM, anchor="mt")
    for k in range(steps):
        on = sched.active(float(sigmas[k]))
        yy = y0 + 16 + k * ch
        d.text((x0 + 34, yy + ch / 2), f"{k + 1}", font=f, fill=DIM, anchor="rm")
        for t in range(frames):
            kept = on and float(keep[t].mean()) >= 0.5
            d.rectangle([x0 + 40 + t * cw + 1, yy + 1, x0 + 40 + (t + 1) * cw - 1, yy + ch - 1],
                        fill=ANCHOR if kept else FREE)
    yy = y0 + 16 + steps * ch  # the output row: with every step anchored, anchored frames are exactly the anchor
    d.text((x0 + 34, yy + ch / 2), "out", font=f, fill=DIM, anchor="rm")
    for t in range(frames):
        cell = (int(x0 + 40 + t * cw + 1), int(yy + 2), int(x0 + 40 + (t + 1) * cw - 1), int(yy + ch))
        if sched.whole_schedule and float(keep[t].mean()) >= 0.5 and thumb is not None:
            base.paste(fit(thumb, cell[2] - cell[0], cell[3] - cell[1]), cell[:2])
        else:
            d.rectangle(cell, fill=(55, 55, 60), outline=(90, 90, 95))


# ---------------------------------------------------------------- shared data, computed once

class Data:
    def __init__(self):
        self.cat = photo("chelsea.png")
        self.coffee = photo("coffee.png")
        self.astronaut = photo("astronaut.png")
        self._mask = None

    def cat_mask(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Salient Mask of the cat photo (default node settings) and its preview overlay."""
        if self._mask is None:
            images = image_tensor(self.cat)
            mask = salient_masks(images)
            self._mask = mask, mask_preview(images, mask)
        return self._mask


# ---------------------------------------------------------------- workflow thumbnails

def thumb_svd_vcut(data: Data) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "VCUT: same SVD video, less compute", "input photo + the guidance schedule (schematic, not SVD output)")
    paste(img, d, fit(data.cat, 462, 260), (25, 60), "input image, centre-cropped to 16:9 as SVD does")
    steps, cut = 25, 17
    run = CutSchedule(cut).new_run()
    guided = [run.is_guided(k) for k in range(1, steps + 1)]
    x0, y0, cw = 70, 366, 428 / steps
    d.text((14, y0 - 20), f"Cut Step Scheduler, {steps} steps, cut step {cut}:", font=font(13, True), fill=FG)
    d.text((64, y0 + 11), "cond", font=font(11), fill=DIM, anchor="rm")
    d.text((64, y0 + 33), "uncond", font=font(11), fill=DIM, anchor="rm")
    for k, g in enumerate(guided):
        xa, xb = x0 + k * cw + 1, x0 + (k + 1) * cw - 1
        d.rectangle([xa, y0, xb, y0 + 20], fill=GUIDED if g else UNGUIDED)          # conditional pass
        if g:
            d.rectangle([xa, y0 + 24, xb, y0 + 44], fill=GUIDED)                     # unconditional pass
        else:
            d.rectangle([xa, y0 + 24, xb, y0 + 44], outline=(90, 90, 95))            # skipped after the cut
    d.text((14, y0 + 52), f"{sum(guided)} guided steps (cond + uncond): semantic binding", font=font(12), fill=GUIDED)
    d.text((14, y0 + 68), f"{steps - sum(guided)} conditional-only steps: quality", font=font(12), fill=UNGUIDED)
    passes = 2 * sum(guided) + steps - sum(guided)
    d.text((14, y0 + 90), f"UNet evaluations per video: {2 * steps} -> {passes}; cross-attn cached",
           font=font(13, True), fill=FG)
    d.text((14, y0 + 112), schedule_summary(cut, steps).split(": ", 1)[1], font=font(11), fill=DIM)
    return img


def thumb_fast_deepcache(data: Data) -> Image.Image:
    """svd_fast_deepcache.json: which UNet passes run whole, partly or not at all over 25 steps (schematic)."""
    img, d = canvas(THUMB, THUMB)
    header(d, "Fast SVD: VCUT + cut + feature cache", "input photo + what runs at each step (schematic, not SVD output)")
    paste(img, d, fit(data.cat, 462, 230), (25, 60), "input image, centre-cropped to 16:9 as SVD does")
    steps, cut, interval = 25, 17, 3
    run = CutSchedule(cut).new_run()
    full = set(full_steps(steps, interval))
    x0, y0, cw = 70, 340, 428 / steps
    d.text((14, y0 - 20), f"cut at step {cut}, feature cache interval {interval}, branch 0:", font=font(13, True),
           fill=FG)
    d.text((64, y0 + 11), "cond", font=font(11), fill=DIM, anchor="rm")
    d.text((64, y0 + 33), "uncond", font=font(11), fill=DIM, anchor="rm")
    for k in range(steps):
        xa, xb = x0 + k * cw + 1, x0 + (k + 1) * cw - 1
        colour = GUIDED if run.is_guided(k + 1) else UNGUIDED
        rows = [(y0, True), (y0 + 24, run.is_guided(k + 1))]
        for y, runs in rows:
            if not runs:
                d.rectangle([xa, y, xb, y + 20], outline=(90, 90, 95))   # not run after the cut
            elif k + 1 in full:
                d.rectangle([xa, y, xb, y + 20], fill=colour)             # the whole UNet
            else:
                d.rectangle([xa, y, xb, y + 20], outline=colour)          # outer blocks only, kept deep feature
                d.rectangle([xa, y + 16, xb, y + 20], fill=colour)
        if k + 1 in full:
            d.text(((xa + xb) / 2, y0 + 48), str(k + 1), font=font(9), fill=DIM, anchor="mt")
    d.text((14, y0 + 64), f"filled: the whole UNet ({len(full)} steps, keeps the deep feature)", font=font(12),
           fill=FG)
    d.text((14, y0 + 80), "outlined + bar: outer blocks only, with the kept feature (an approximation)",
           font=font(12), fill=FG)
    d.text((14, y0 + 96), "empty: the unconditional pass, not run after the cut", font=font(12), fill=DIM)
    d.text((14, y0 + 120), "SVD-XT MACs per video: 0.33x of plain SVD (bench/vcut_bench.py)", font=font(13, True),
           fill=FG)
    return img


def thumb_first_frame(data: Data) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "STIV Frame Replace: first frame = input", "input photo + which latent frames are anchored (schematic, not SVD output)")
    paste(img, d, fit(data.coffee, 300, 169), (106, 62), "input image (its latent is the anchor)")
    frames = 14
    anchored = parse_frame_list("0", frames)
    d.text((14, 262), "columns: latent frames, rows: sampling steps (a 10-step schedule)", font=font(12), fill=FG)
    anchor_grid(img, d, (14, 282, 498, 470), frames, anchored, 10, 1.0, thumb=data.coffee)
    d.rectangle([14, 482, 28, 494], fill=ANCHOR)
    d.text((34, 481), "anchor at the step's noise level", font=font(12), fill=DIM)
    d.rectangle([264, 482, 278, 494], fill=FREE)
    d.text((284, 481), "sampled freely by SVD", font=font(12), fill=DIM)
    return img


def thumb_alss(data: Data, frames: np.ndarray) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    f, s = 5, 3  # the workflow's ALSS Loop Clip settings on SVD's 14 frames
    idx = alss_indices(f, s, seed=0)
    header(d, "ALSS Loop Clip: ends where it starts",
           f"f={f}, s={s} (Eq. 3-4) on 14 real frames (every 2nd of vid_h264.mp4)")
    tw, th = 66, 37
    for i in range(14):
        x, y = 14 + (i % 7) * (tw + 4), 60 + (i // 7) * (th + 16)
        paste(img, d, fit(pil(frames[i]), tw, th), (x, y), outline=ANCHOR if i in idx else None)
        d.text((x + 2, y + 1), str(i), font=font(11, True), fill=(255, 255, 255))
    d.text((14, 172), "source frames (green: used by the clip)", font=font(12), fill=DIM)
    # index plot: clip position -> source frame
    px0, py0, pw, ph = 50, 200, 440, 170
    d.rectangle([px0, py0, px0 + pw, py0 + ph], outline=(90, 90, 95))
    pts = [(px0 + pw * k / (len(idx) - 1), py0 + ph - ph * v / 13) for k, v in enumerate(idx)]
    d.line(pts[:f], fill=GUIDED, width=3)
    d.line(pts[f - 1:], fill=UNGUIDED, width=3)
    for p, v in zip(pts, idx, strict=False):
        d.ellipse([p[0] - 4, p[1] - 4, p[0] + 4, p[1] + 4], fill=FG)
        d.text((p[0], p[1] - 7), str(v), font=font(11), fill=FG, anchor="mb")
    d.text((px0 - 8, py0 + ph // 2), "frame", font=font(11), fill=DIM, anchor="rm")
    d.text((px0 + 8, py0 + 6), "forward, stride s", font=font(11), fill=GUIDED)
    d.text((px0 + pw - 8, py0 + 6), "back, steps in {2,4,6,8}", font=font(11), fill=UNGUIDED, anchor="ra")
    cw = (pw + 36) / len(idx)
    for k, v in enumerate(idx):
        paste(img, d, fit(pil(frames[v]), int(cw) - 4, 28), (int(px0 - 18 + k * cw), py0 + ph + 12))
    d.text((14, py0 + ph + 48), f"clip = frames {', '.join(map(str, idx))}: {len(idx)} = 2f-1 frames, last = first",
           font=font(12), fill=FG)
    d.text((14, py0 + ph + 66), "SVD then refines it with both ends anchored (STIV Frame Replace '0,-1').",
           font=font(12), fill=DIM)
    return img


def thumb_seamless(data: Data) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "Loop Conditioning: a seamless loop",
           "input photo + the loop layout of SVD's latent frames (schematic, not SVD output)")
    paste(img, d, fit(data.astronaut, 220, 220), (146, 60), "input image")
    frames = loop_frame_count(14)
    concat = sdslc_layout(torch.ones(1, 1, 1, 1), frames)[:, 0, 0, 0]  # Eq. 8: image latent at both ends
    keep = loop_keep_mask(frames, 1, 1)[:, 0, 0, 0]                     # loop closure: first + last anchored
    cw, y0 = 484 / frames, 330
    for t in range(frames):
        xa = int(14 + t * cw + 1)
        cell = (xa, y0, int(14 + (t + 1) * cw - 1), y0 + 44)
        if keep[t] >= 1:
            img.paste(fit(data.astronaut, cell[2] - cell[0], cell[3] - cell[1]), cell[:2])
            d.rectangle(cell, outline=ANCHOR, width=2)
        else:
            d.rectangle(cell, fill=FREE)
        d.text(((cell[0] + cell[2]) / 2, y0 + 50), str(t), font=font(10), fill=DIM, anchor="mt")
        if concat[t] == 0:
            d.text(((cell[0] + cell[2]) / 2, y0 + 22), "0", font=font(10), fill=DIM, anchor="mm")
    # the loop arrow: from the last frame back to the first
    d.arc([20, y0 + 40, 492, y0 + 120], start=10, end=170, fill=GUIDED, width=3)
    arrow(d, (34, y0 + 96), (26, y0 + 70), fill=GUIDED, width=3)
    d.text((256, y0 + 100), "plays in a loop", font=font(12, True), fill=GUIDED, anchor="mm")
    d.text((14, 458), f"{frames} frames (2f-1); SDSLC concat [e(F0), 0 ... 0, e(F0)] (Eq. 8,", font=font(12),
           fill=FG)
    d.text((14, 474), "'0' = zero padding); first and last frame anchored to the image", font=font(12), fill=FG)
    d.text((14, 490), "(loop closure), so the video ends where it starts", font=font(12), fill=FG)
    return img


def thumb_salient(data: Data) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "Salient Mask: only the subject moves", "the real photo with the Salient Mask node's preview overlay")
    mask, preview = data.cat_mask()
    paste(img, d, fit(pil(preview[0]), 484, 322), (14, 62))
    paste(img, d, fit(pil(mask[0][..., None].expand(-1, -1, 3)), 120, 80), (372, 396), outline=FG)
    d.text((14, 400), "red: the salient object (motion region,", font=font(13), fill=FG)
    d.text((14, 418), "LoopAnimate FGSM Eq. 9-10)", font=font(13), fill=FG)
    d.text((14, 444), "dark: still background, anchored to", font=font(13), fill=DIM)
    d.text((14, 462), "the image on every frame of the loop", font=font(13), fill=DIM)
    d.text((14, 490), "computed on the CPU, no learned weights", font=font(11), fill=DIM)
    return img


def motion_of(frames: np.ndarray, block: int = 16, search_range: int = 16):
    """Motion Vector Encode's outputs (vectors, residual, colour-wheel preview) of uint8 frames."""
    video = torch.from_numpy(np.ascontiguousarray(frames))
    mv, residual = encode(video, block_size=block, search_range=search_range)
    return mv, residual, motion_preview(mv)


def thumb_motion_vis(data: Data, frames: np.ndarray) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "Motion Vector Encode: see a video's motion", "a real clip: frame and its 16x16 block vectors")
    _, _, preview = motion_of(frames)
    t = len(frames) - 2
    paste(img, d, fit(pil(frames[t + 1]), 384, 202), (14, 60), "frame (vid_h264.mp4)")
    paste(img, d, fit(pil(preview[t]), 384, 202), (14, 286), "vectors: hue = direction, brightness = length, black = still")
    paste(img, d, colour_wheel(90), (408, 340))
    d.text((453, 436), "direction", font=font(11), fill=DIM, anchor="mt")
    return img


def thumb_motion_transfer(data: Data, frames: np.ndarray) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "Motion transfer: a photo moved like a video",
           "a real clip's block vectors applied to a photo (motion-only decode)")
    mv, _, preview = motion_of(frames)
    h, w = mv.frame_size
    new = torch.from_numpy(np.array(fit(data.cat, w, h))).contiguous()
    moved = decode(new, mv)  # residual off: motion only (the workflow's Motion Vector Decode)
    pw, ph, xr = 224, 126, 274
    paste(img, d, fit(pil(frames[0]), pw, ph), (14, 60), "reference video, frame 0")
    paste(img, d, fit(pil(frames[-1]), pw, ph), (xr, 60), f"reference video, frame {len(frames) - 1}")
    paste(img, d, fit(pil(preview[-1]), pw, ph), (14, 212), "its motion vectors (the rabbit moves)")
    paste(img, d, fit(pil(new), pw, ph), (xr, 212), "new image = frame 0")
    paste(img, d, fit(pil(moved[-1]), pw, ph), (xr, 364), f"new image moved to frame {len(frames) - 1}")
    d.text((14, 366), "Motion Vector Decode", font=font(13, True), fill=FG)
    for k, line in enumerate(["(residual off) warps the new image", "block by block with the reference's",
                              "vectors: a rough, blocky video", "(here only where the rabbit moved)",
                              "that SVD then refines at denoise", "0.45, first frame anchored."]):
        d.text((14, 386 + 17 * k), line, font=font(12), fill=DIM)
    return img


def saved_and_loaded(frames: np.ndarray):
    """Motion Vector Encode -> Save Motion Vectors -> Load Motion Vectors through a real .safetensors file:
    (loaded vectors, loaded residual, header, file size in bytes)."""
    mv, residual, _ = motion_of(frames)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "motion_vectors_00001_.safetensors"
        version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
        save_motion_vectors(path, mv, residual, pack_version=version)
        loaded, loaded_residual, header = load_motion_vectors(path)
        return loaded, loaded_residual, header, path.stat().st_size


def thumb_motion_save(data: Data, frames: np.ndarray) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "Save Motion Vectors: keep a video's motion", "a real clip encoded, saved to .safetensors, loaded back")
    mv, residual, meta, size = saved_and_loaded(frames)
    assert torch.equal(decode(torch.from_numpy(frames[0]), mv, residual), torch.from_numpy(frames))
    pw, ph = 236, 133
    paste(img, d, fit(pil(frames[-1]), pw, ph), (14, 60), "video frame (vid_h264.mp4)")
    paste(img, d, fit(pil(motion_preview(mv)[-1]), pw, ph), (262, 60), "its 16x16 block vectors")
    d.text((14, 226), "motion_vectors_00001_.safetensors", font=font(14, True), fill=FG)
    h, w = mv.frame_size
    rows = [("tensors", f"vectors int16 {list(mv.vectors.shape)}, residual int16 {list(residual.shape)}"),
            ("frames", f"{meta['frames']} at {w}x{h}"), ("block size", meta["block_size"] + " px"),
            ("source", meta["source"]), ("search range", "+-" + meta["search_range"] + " px"),
            ("format", f"{meta['format']} version {meta['format_version']}"),
            ("pack version", meta["pack_version"]), ("sha256", meta["sha256"][:32] + "..."),
            ("file size", f"{size / 1024:.0f} KB, no pickle")]
    for k, (key, value) in enumerate(rows):
        d.text((14, 252 + 19 * k), key, font=font(12), fill=DIM)
        d.text((130, 252 + 19 * k), value, font=font(12), fill=FG)
    d.text((14, 436), "Load Motion Vectors + Motion Vector Decode rebuild", font=font(13, True), fill=GUIDED)
    d.text((14, 454), "the video bit for bit (checked when this picture was made)", font=font(13, True), fill=GUIDED)
    d.text((14, 482), "batch a folder: run_workflow.py ... --batch-input LoadVideo.file=videos/", font=font(11),
           fill=DIM)
    return img


def thumb_motion_load_transfer(data: Data, frames: np.ndarray) -> Image.Image:
    img, d = canvas(THUMB, THUMB)
    header(d, "Load Motion Vectors: move a new image", "vectors loaded from a saved file, applied to a photo")
    mv, _, _, _ = saved_and_loaded(frames)
    h, w = mv.frame_size
    new = torch.from_numpy(np.array(fit(data.coffee, w, h))).contiguous()
    moved = decode(new, mv)  # residual off: motion only (the workflow's Motion Vector Decode)
    pw, ph, xr = 224, 126, 274
    paste(img, d, fit(pil(motion_preview(mv)[-1]), pw, ph), (14, 60), "loaded vectors (last frame pair)")
    paste(img, d, fit(pil(frames[-1]), pw, ph), (xr, 60), "the video they were saved from")
    paste(img, d, fit(pil(new), pw, ph), (14, 232), "new image = frame 0")
    paste(img, d, fit(pil(moved[-1]), pw, ph), (xr, 232), f"new image moved to frame {len(frames) - 1}")
    for k, line in enumerate(["Motion Vector Decode (residual off) warps the new image block by block with",
                              "the saved vectors: the same motion, no video and no encoding needed.",
                              "The file's header is checked first: format version, frame and block size,",
                              "and a checksum of the data."]):
        d.text((14, 404 + 18 * k), line, font=font(12), fill=DIM if k > 1 else FG)
    return img


# ---------------------------------------------------------------- README pictures

def pic_salient(data: Data) -> Image.Image:
    mask, preview = data.cat_mask()
    pw, ph = 192, 128
    img, d = canvas(600, ph + 34)
    for k, (im, label) in enumerate([(data.cat, "photo"), (pil(mask[0][..., None].expand(-1, -1, 3)), "Salient Mask"),
                                     (pil(preview[0]), "preview (overlay)")]):
        paste(img, d, fit(im, pw, ph), (6 + k * (pw + 5), 6), label)
    return img


def pic_motion(frames: np.ndarray) -> Image.Image:
    _, residual, preview = motion_of(frames)
    t = len(frames) - 2
    pw, ph = 192, 108
    img, d = canvas(600, ph + 34)
    panels = [(pil(frames[t + 1]), "frame"), (pil(preview[t]), "vectors (colour wheel)"),
              (pil(residual_to_image(residual[t])), "residual (mid-grey = 0)")]
    for k, (im, label) in enumerate(panels):
        paste(img, d, fit(im, pw, ph), (6 + k * (pw + 5), 6), label)
    return img


def pic_alss(frames: np.ndarray) -> Image.Image:
    f, s = 7, 4
    idx = alss_indices(f, s, seed=0)
    img, d = canvas(600, 330)
    d.text((10, 8), f"ALSS (LoopAnimate Eq. 3-4), f={f}, s={s}, seed 0: {len(idx)} frames of "
                    f"{frames_needed(f, s)}", font=font(13, True), fill=FG)
    px0, py0, pw, ph = 60, 40, 520, 190
    d.rectangle([px0, py0, px0 + pw, py0 + ph], outline=(90, 90, 95))
    top = frames_needed(f, s) - 1
    for v in range(0, top + 1, 4):
        y = py0 + ph - ph * v / top
        d.line([px0 - 4, y, px0, y], fill=DIM)
        d.text((px0 - 7, y), str(v), font=font(10), fill=DIM, anchor="rm")
    d.text((14, py0 + ph // 2), "source\nframe", font=font(10), fill=DIM, anchor="lm")
    pts = [(px0 + pw * k / (len(idx) - 1), py0 + ph - ph * v / top) for k, v in enumerate(idx)]
    d.line(pts[:f], fill=GUIDED, width=3)
    d.line(pts[f - 1:], fill=UNGUIDED, width=3)
    for p, v in zip(pts, idx, strict=False):
        d.ellipse([p[0] - 4, p[1] - 4, p[0] + 4, p[1] + 4], fill=FG)
        d.text((p[0] + 6, p[1] - 4), str(v), font=font(10), fill=FG, anchor="lb")
    d.text((px0 + 10, py0 + 8), "forward: stride s", font=font(11), fill=GUIDED)
    d.text((px0 + pw - 10, py0 + 8), "back to F0: steps in {2,4,6,8}", font=font(11), fill=UNGUIDED, anchor="ra")
    cw = 580 / len(idx)
    for k, v in enumerate(idx):
        x = int(10 + k * cw)
        paste(img, d, fit(pil(frames[v]), int(cw) - 4, 36), (x, 252))
        d.text((x + 2, 292), f"F{v}", font=font(10), fill=DIM)
    d.text((10, 310), "the chosen frames of a real clip (every 2nd frame of vid_h264.mp4 from 150); last = first",
           font=font(11), fill=DIM)
    return img


def pic_loop_metrics(frames: np.ndarray) -> Image.Image:
    """Video Loop Metrics' plot (loop/metrics.py render_plot) of a real clip made into a loop by ALSS (f=7, s=4);
    the input image is the clip's first frame."""
    idx = alss_indices(7, 4, seed=0)
    video = torch.from_numpy(frames[idx].astype(np.float32) / 255.0)
    m = loop_metrics(video, video[:1])
    img = Image.new("RGB", (600, 344), (255, 255, 255))
    img.paste(pil(render_plot(m, width=600, height=310)), (0, 0))
    ImageDraw.Draw(img).multiline_text(
        (300, 312), "ALSS loop clip (f=7, s=4) of vid_h264.mp4, every 2nd frame from 150; the input image is\n"
        "frame 0, so the 'cos to input image' curve hides 'cos to first frame'", font=font(10), fill=(60, 60, 60),
        anchor="ma", align="center")
    return img


def pic_frame_replace(data: Data) -> Image.Image:
    img, d = canvas(600, 300)
    d.text((10, 8), "STIV Frame Replace: which latent frames are anchored at each step",
           font=font(13, True), fill=FG)
    frames = 14
    for k, (spec, fraction) in enumerate([("0", 1.0), ("0,-1", 0.5)]):
        x0 = 10 + k * 295
        d.text((x0, 32), f"frames '{spec}', anchor_steps {fraction} (12 karras steps)", font=font(12), fill=FG)
        anchor_grid(img, d, (x0, 52, x0 + 285, 262), frames, parse_frame_list(spec, frames), 12, fraction,
                    thumb=data.coffee)
    d.rectangle([10, 274, 24, 286], fill=ANCHOR)
    d.text((30, 273), "anchor latent at the step's noise (z + sigma * noise)", font=font(11), fill=DIM)
    d.rectangle([360, 274, 374, 286], fill=FREE)
    d.text((380, 273), "free (sampled)", font=font(11), fill=DIM)
    d.text((470, 273), "out: = the image", font=font(11), fill=DIM)
    return img


def thumb_extend(frames: np.ndarray) -> Image.Image:
    """Three overlapping segments of a real clip, their anchored overlap (continuation_plan) and the joined video."""
    img, d = canvas(THUMB, THUMB)
    seg, k = 25, 2
    header(d, "Video Extend: 3 segments, one video",
           f"real frames cut as segments of {seg}, overlap {k} (schematic, not SVD output)")
    video = torch.from_numpy(frames).float() / 255.0
    starts = [0, seg - k, 2 * (seg - k)]
    parts = [video[s:s + seg] for s in starts]
    keep = continuation_plan(torch.zeros(seg, 4, 1, 1), k, seg).keep[:, 0, 0, 0]  # the node's plan: first k anchored
    cw = 484 / joined_length([seg] * 3, k)
    for i, s in enumerate(starts):
        y = 70 + i * 92
        d.text((14, y), f"segment {i + 1}" + ("" if i == 0 else f": frames 1-{k} anchored to segment {i}'s last {k}"),
               font=font(12, True if i == 0 else False), fill=FG)
        for t in range(0, seg, 4):
            x = int(14 + (s + t) * cw)
            paste(img, d, fit(pil(parts[i][t]), int(4 * cw) - 2, 40), (x, y + 18))
        for t in range(seg):
            x = int(14 + (s + t) * cw)
            anchored = i > 0 and keep[t] >= 1
            d.rectangle([x, y + 62, int(x + cw) - 1, y + 70], fill=ANCHOR if anchored else FREE)
    joined = join_segments(parts, k)
    _, report = seam_report(joined, [seg] * 3, k)
    y = 70 + 3 * 92
    d.text((14, y), f"Join Video Segments: {joined.shape[0]} frames (each overlap kept once)", font=font(13, True),
           fill=GUIDED)
    for t in range(0, joined.shape[0], 6):
        paste(img, d, fit(pil(joined[t]), int(6 * cw) - 2, 36), (int(14 + t * cw), y + 20))
    for j, line in enumerate(report.splitlines()[1:]):
        d.text((14, y + 66 + 16 * j), line, font=font(11), fill=DIM)
    return img


def thumb_keyframes(data: Data, frames_text: str, images: list[Image.Image], names: list[str], title: str) -> Image.Image:
    """The keyframe images and which latent frames STIV Frame Replace anchors to them (frame_replace_plan)."""
    img, d = canvas(THUMB, THUMB)
    header(d, title, "keyframe photos + the anchored latent frames (schematic, not SVD output)")
    n = 25
    listed = parse_frame_list(frames_text, n)
    plan = frame_replace_plan(torch.zeros(n, 4, 1, 1), listed, torch.zeros(len(listed), 4, 1, 1))
    w = (484 - 12 * (len(images) - 1)) // len(images)
    for j, (photo_, name) in enumerate(zip(images, names, strict=False)):
        paste(img, d, fit(photo_, w, int(w * 9 / 16)), (14 + j * (w + 12), 62), f"{name} -> frame {listed[j]}")
    y0, cw = 80 + int(w * 9 / 16) + 30, 484 / n
    d.text((14, y0 - 18), f"STIV Frame Replace, frames '{frames_text}' on {n} frames:", font=font(13, True), fill=FG)
    for t in range(n):
        cell = (int(14 + t * cw + 1), y0, int(14 + (t + 1) * cw - 1), y0 + 44)
        if plan.keep[t].max() >= 1:
            j = listed.index(t)
            img.paste(fit(images[j], cell[2] - cell[0], cell[3] - cell[1]), cell[:2])
            d.rectangle(cell, outline=ANCHOR, width=2)
        else:
            d.rectangle(cell, fill=FREE)
        if t % 4 == 0 or t == n - 1:
            d.text(((cell[0] + cell[2]) / 2, y0 + 50), str(t), font=font(10), fill=DIM, anchor="mt")
    anchor_grid(img, d, (14, y0 + 72, 498, 500), n, listed, 8, 1.0)
    return img


def thumb_speed_vs_quality(frames: np.ndarray) -> Image.Image:
    """svd_speed_vs_quality.json: Video Compare's preview and plot, on a real clip against a copy blurred more and more
    towards its end (a stand-in for a speed-up's differences; schematic, not SVD output)."""
    img, d = canvas(THUMB, THUMB)
    header(d, "Speed vs quality: plain vs fast, same seed", "Video Compare on a clip vs a degraded copy (schematic)")
    reference = torch.from_numpy(frames).float() / 255.0
    candidate = torch.stack([torch.from_numpy(cv2.GaussianBlur(f, (0, 0), 0.4 + 0.25 * t)).float() / 255.0
                             for t, f in enumerate(frames)])
    result = compare.compare_videos(reference, candidate)
    panels = compare.preview(reference, candidate, result, "plain", "fast")
    last = pil(panels[len(frames) - 1])
    paste(img, d, last.resize((484, round(last.height * 484 / last.width)), Image.LANCZOS), (14, 62),
          f"frame {len(frames) - 1}: plain | fast | difference")
    plot = pil(compare.render_plot(result, "plain", "fast", width=484))
    top = 62 + round(last.height * 484 / last.width) + 26
    plot.thumbnail((484, THUMB - top - 8), Image.LANCZOS)  # the whole plot: three panels and the summary line
    paste(img, d, plot, ((THUMB - plot.width) // 2, top))
    return img


# ---------------------------------------------------------------- main

def save_new_thumbnails(data: Data) -> None:
    save_jpg(thumb_extend(clip("vid_h264.mp4", 71, 100, 192)), WORKFLOWS / "video_extend_3_segments.jpg")
    save_jpg(thumb_keyframes(data, "0,-1", [data.astronaut, data.coffee], ["first", "last"],
                             "Keyframe interpolation: first + last frame"), WORKFLOWS / "keyframe_interpolation.jpg")
    save_jpg(thumb_keyframes(data, "0,12,24", [data.astronaut, data.cat, data.coffee], ["first", "middle", "last"],
                             "Keyframes at frames 0, 12, 24"), WORKFLOWS / "keyframes_0_12_24.jpg")
    save_jpg(thumb_speed_vs_quality(clip("vid_h264.mp4", 8, 186, 256)), WORKFLOWS / "svd_speed_vs_quality.jpg")


def render_all() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    data = Data()
    walk = clip("vid_h264.mp4", 25, 150, 256, step=2)  # every 2nd frame: the rabbit walks, the camera follows
    near = clip("vid_h264.mp4", 13, 186, 384)             # the rabbit walks past a still background
    save_jpg(thumb_svd_vcut(data), WORKFLOWS / "svd_vcut_img2vid.jpg")
    save_jpg(thumb_fast_deepcache(data), WORKFLOWS / "svd_fast_deepcache.jpg")
    save_jpg(thumb_first_frame(data), WORKFLOWS / "loop_first_frame_anchored.jpg")
    save_jpg(thumb_seamless(data), WORKFLOWS / "loop_seamless.jpg")
    save_jpg(thumb_salient(data), WORKFLOWS / "loop_salient_still_background.jpg")
    save_jpg(thumb_alss(data, walk[:14]), WORKFLOWS / "loop_generate_alss_refine.jpg")
    save_jpg(thumb_motion_vis(data, near[:4]), WORKFLOWS / "codec_motion_visualisation.jpg")
    save_jpg(thumb_motion_transfer(data, near), WORKFLOWS / "codec_motion_transfer.jpg")
    save_jpg(thumb_motion_save(data, near), WORKFLOWS / "codec_motion_save.jpg")
    save_jpg(thumb_motion_load_transfer(data, near), WORKFLOWS / "codec_motion_load_transfer.jpg")
    save_new_thumbnails(data)
    save_png(pic_salient(data), IMG / "salient_mask.png")
    save_png(pic_motion(near[:4]), IMG / "motion_vectors.png")
    save_png(pic_alss(walk), IMG / "alss_indices.png")
    save_png(pic_loop_metrics(walk), IMG / "loop_metrics.png")
    save_png(pic_frame_replace(data), IMG / "frame_replace.png")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the workflows' layout and notes")
    args = parser.parse_args()
    if not args.check:
        render_all()
    sys.exit(0 if check_all() else 1)
