"""Video Compare: peak memory and time of the whole comparison (numbers, preview, plot) on an SVD-sized video.

    .venv/bin/python bench/video_compare_memory.py [--frames 25] [--size 1024x576]

Reference: a real clip (tests/data/video/vid_h264.mp4) resized to --size, float32 [T,H,W,3] as VAE Decode gives it;
candidate: the reference plus seeded Gaussian noise (sigma 0.01), so every frame takes the SSIM path. A child process
builds both videos, then runs video.compare's compare_videos, preview and render_plot and reports the peak resident
set above the resident set with the two videos in memory (VmHWM reset through /proc/self/clear_refs), with glibc told
to mmap every large block (MALLOC_MMAP_THRESHOLD_) so freed tensors leave the resident set; the preview (the node's
IMAGE output) is counted in the peak.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time


def child(count: int, width: int, height: int) -> dict:
    import torch
    from clips import reset_peak, resized_clip, status_kib
    from pack_import import TEST_DATA, register_pack
    register_pack()
    from vcut.video import compare

    reference = resized_clip(TEST_DATA / "video" / "vid_h264.mp4", count, width, height)
    generator = torch.Generator().manual_seed(0)
    candidate = torch.empty_like(reference)
    for i in range(count):
        candidate[i] = reference[i] + 0.01 * torch.randn(reference[i].shape, generator=generator)
    gc.collect()
    before = reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    result = compare.compare_videos(reference, candidate)
    preview = compare.preview(reference, candidate, result)
    compare.render_plot(result)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"frames": count, "size": f"{width}x{height}", "videos_mib": round(2 * reference.nbytes / 2 ** 20),
            "preview_mib": round(preview.nbytes / 2 ** 20), "peak_above_mib": round((status_kib("VmHWM") - before) / 1024),
            "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "threads": torch.get_num_threads(),
            "summary": compare.summary(result)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[25])
    parser.add_argument("--size", default="1024x576")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    if args.child:
        print(json.dumps(child(args.frames[0], width, height)))
        return
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    for count in args.frames:
        out = subprocess.run([sys.executable, __file__, "--child", "--frames", str(count), "--size", args.size],
                             env=env, capture_output=True, text=True, check=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
