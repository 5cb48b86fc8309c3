"""Motion-vector codec benchmark: speed (frames/s) and motion-only PSNR, side by side in one run.

    .venv/bin/python -m bench.codec_bench [--frames 30] [--repeats 3] [--device cpu|cuda]
    .venv/bin/python -m bench.codec_bench --precision [--frames 10] [--repeats 3]

For each clip (native size, plus vid_h264 at 960x540, the issue's reference size) and each method:
- ours: Motion Vector Encode (vectors + lossless residuals) with the fast and the exhaustive search, two frame
  pairs at a time (threads=2, the default) or one;
- x264 medium / ultrafast through PyAV: encode (P-frames only) + decode with export_mvs + mapping to our grid;
- OpenCV DIS optical flow (fast preset) on luma.
fps = pairs / best of --repeats wall-clock runs, the methods interleaved run by run (the machine is shared: all
methods see the same load, and the minimum is the least disturbed run).
motion-only PSNR = mean over frame pairs of PSNR(frame_t, warp(frame_{t-1}, vectors_t)) on RGB, warp = our decoder
without residual (DIS: its dense flow with bilinear remap). Lossless round trip checked for ours.

--precision: the two precisions of the codec (codec.types) on the same clip as ComfyUI's LoadVideo gives it: 8-bit
frames (0.8.0 decodes to rgb24, x / 255) and float32 frames (0.30.0 decodes to gbrpf32le), through what the nodes do
(IMAGE -> codec frames -> encode -> residual IMAGE; residual IMAGE -> decode -> IMAGE, bit for bit), fast search
16x16 +-16: encode / decode frames per second (best of --repeats) and the size of the saved file with the residual
(and of the motion-only file).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import av
import cv2
import numpy as np
import torch

from bench.pack_import import SHARED_DATA, register_pack

register_pack()  # the pack as the package `vcut`, as ComfyUI and the tests import it
from vcut.bench.clips import read_frames  # noqa: E402  (after the sys.path / package setup above)
from vcut.codec import (  # noqa: E402  (after the sys.path / package setup above)
    codec_frames,
    codec_to_image,
    decode,
    encode,
    image_to_residual,
    motion_only_psnr,
    psnr,
    residual_to_image,
    save_motion_vectors,
    torch_ops,
)
from vcut.codec.x264 import x264_motion_vectors  # noqa: E402  (after the sys.path / package setup above)

VIDEOS = SHARED_DATA / "video"


def load(name: str, count: int, start: int, size=None) -> torch.Tensor:
    frames = read_frames(VIDEOS / name, count, start)
    if size:
        interpolation = cv2.INTER_AREA if size[0] < frames.shape[2] else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(img, size, interpolation=interpolation) for img in frames])
    return torch.from_numpy(frames)


def round_robin(jobs: dict, repeats: int) -> tuple[dict, dict]:
    """Run every job `repeats` times, interleaved (job A, B, C, A, B, C, ...), so that all methods see the same
    background load; returns the best wall-clock time and the last output of each."""
    best, outs = {k: float("inf") for k in jobs}, {}
    for _ in range(repeats):
        for key, fn in jobs.items():
            t0 = time.perf_counter()
            outs[key] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[key] = min(best[key], time.perf_counter() - t0)
    return best, outs


def dis_run(frames: np.ndarray):
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    return [dis.calc(gray[i + 1], gray[i], None) for i in range(len(frames) - 1)]  # flow cur -> prev


def dis_psnr(frames: np.ndarray, flows) -> float:
    h, w = frames.shape[1:3]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    vals = [psnr(torch.from_numpy(frames[i + 1]), torch.from_numpy(
        cv2.remap(frames[i], gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)))
        for i, f in enumerate(flows)]
    return float(np.mean(vals))


def bench_clip(label: str, frames: torch.Tensor, repeats: int, device: str, torch_pairs: int = 0) -> list[tuple]:
    pairs = frames.shape[0] - 1
    np_frames = frames.numpy()
    ours = {f"ours fast 16x16 +-16, 2 threads ({device})": (16, "fast", 2),
            f"ours fast 16x16 +-16, 1 thread ({device})": (16, "fast", 1),
            f"ours fast 8x8 +-16, 2 threads ({device})": (8, "fast", 2),
            f"ours exhaustive 16x16 +-16, 2 threads ({device})": (16, "exhaustive", 2)}
    if device != "cpu":  # the GPU path is the exhaustive torch search
        ours = {f"ours exhaustive 16x16 +-16 ({device})": (16, "exhaustive", 1)}
    jobs = {name: (lambda b=b, m=m, th=th: encode(frames, b, 16, m, device, threads=th))
            for name, (b, m, th) in ours.items()}
    for preset in ("medium", "ultrafast"):
        jobs[f"x264 {preset}"] = lambda preset=preset: x264_motion_vectors(frames, 4, preset)
    jobs["OpenCV DIS fast (dense flow, bilinear)"] = lambda: dis_run(np_frames)
    best, outs = round_robin(jobs, repeats)
    rows = []
    for name in ours:
        mv, res = outs[name]
        exact = torch.equal(decode(frames[0], mv, res), frames)
        rows.append((label, name, pairs / best[name], motion_only_psnr(frames, mv), "yes" if exact else "NO"))
    if torch_pairs and device == "cpu":  # the plain torch full search (the GPU path) on this CPU: a few pairs only
        n = min(torch_pairs, pairs)
        t0 = time.perf_counter()
        for i in range(n):
            torch_ops.exhaustive_search(torch_ops.luma(frames[i + 1]), torch_ops.luma(frames[i]), 16, 16)
        rows.append((label, f"ours exhaustive 16x16 +-16, torch on cpu (search only, {n} pairs, 1 run)",
                     n / (time.perf_counter() - t0), float("nan"), "-"))
    for preset in ("medium", "ultrafast"):
        name = f"x264 {preset}"
        p16 = motion_only_psnr(frames, x264_motion_vectors(frames, 16, preset))
        rows.append((label, f"{name} (4x4 grid; 16x16 grid: {p16:.2f} dB)", pairs / best[name],
                     motion_only_psnr(frames, outs[name]), "-"))
    name = "OpenCV DIS fast (dense flow, bilinear)"
    rows.append((label, name, pairs / best[name], dis_psnr(np_frames, outs[name]), "-"))
    return rows


def load_images(name: str, count: int, start: int, pixel_format: str) -> torch.Tensor:
    """IMAGE frames as ComfyUI's LoadVideo gives them: rgb24 / 255 (0.8.0) or gbrpf32le (0.30.0), float32."""
    frames = []
    with av.open(str(VIDEOS / name)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= start:
                frames.append(frame.to_ndarray(format=pixel_format))
            if len(frames) == count:
                break
    video = np.stack(frames)
    return torch.from_numpy(video).float() / 255.0 if video.dtype == np.uint8 else torch.from_numpy(video)


def bench_precision(frames: int, repeats: int) -> None:
    """Encode / decode speed and file size of 8-bit and float32 IMAGE input (the --precision table)."""
    print("| input (LoadVideo decode) | precision | encode fps | decode fps | file with residual (MB) | "
          "motion-only file (KB) | bit-exact |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label, pixel_format in (("8-bit (rgb24 / 255, ComfyUI 0.8.0)", "rgb24"),
                                ("float32 (gbrpf32le, ComfyUI 0.30.0)", "gbrpf32le")):
        images = load_images("vid_h264.mp4", frames, 30, pixel_format)

        def encode_node():  # Motion Vector Encode: IMAGE -> codec frames -> vectors + residual IMAGE
            motion, residual = encode(codec_frames(images), 16, 16, "fast")
            return motion, residual_to_image(residual)

        def decode_node(motion, residual_image):  # Motion Vector Decode: residual IMAGE -> IMAGE
            first = codec_frames(images[:1])[0]
            return codec_to_image(decode(first, motion, image_to_residual(residual_image)))

        best_enc = best_dec = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            motion, residual_image = encode_node()
            best_enc = min(best_enc, time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = decode_node(motion, residual_image)
            best_dec = min(best_dec, time.perf_counter() - t0)
        exact = torch.equal(out.view(torch.int32), images.view(torch.int32))
        with tempfile.TemporaryDirectory() as folder:
            full, only = os.path.join(folder, "full.safetensors"), os.path.join(folder, "only.safetensors")
            save_motion_vectors(full, motion, image_to_residual(residual_image))
            save_motion_vectors(only, motion)
            sizes = os.path.getsize(full) / 1e6, os.path.getsize(only) / 1e3
        print(f"| {label} | {motion.precision} | {frames / best_enc:.1f} | {frames / best_dec:.1f} | "
              f"{sizes[0]:.1f} | {sizes[1]:.1f} | {'yes' if exact else 'NO'} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--torch-pairs", type=int, default=2, help="frame pairs for the torch full search on the "
                        "CPU (960x540 clip only; 0 = skip)")
    parser.add_argument("--precision", action="store_true", help="8-bit vs float32 input instead (1280x720 clip)")
    args = parser.parse_args()
    if args.precision:
        print(f"# codec precision benchmark {time.strftime('%Y-%m-%d %H:%M')} | "
              f"{platform.processor() or platform.machine()} | torch threads {torch.get_num_threads()} | "
              f"{args.frames} frames of vid_h264 1280x720, best of {args.repeats}")
        bench_precision(args.frames, args.repeats)
        return
    clips = [("vid_h264 960x540", "vid_h264.mp4", 30, (960, 540)),
             ("vid_h264 1280x720 (native)", "vid_h264.mp4", 30, None),
             ("car-detection 768x432 (native)", "car-detection.mp4", 100, None)]
    if args.device != "cpu":
        clips.append(("vid_h264 1920x1080 (upscaled)", "vid_h264.mp4", 30, (1920, 1080)))
    print(f"# codec benchmark {time.strftime('%Y-%m-%d %H:%M')} | {platform.processor() or platform.machine()} | "
          f"torch threads {torch.get_num_threads()} | cv2 threads {cv2.getNumThreads()} | device {args.device} | "
          f"{args.frames} frames, best of {args.repeats}")
    print("| clip | method | fps | motion-only PSNR (dB) | lossless |")
    print("|---|---|---:|---:|---|")
    for k, (label, name, start, size) in enumerate(clips):
        frames = load(name, args.frames, start, size)
        for row in bench_clip(label, frames, args.repeats, args.device, args.torch_pairs if k == 0 else 0):
            quality = "-" if np.isnan(row[3]) else f"{row[3]:.2f}"
            print(f"| {row[0]} | {row[1]} | {row[2]:.1f} | {quality} | {row[4]} |", flush=True)


if __name__ == "__main__":
    main()
