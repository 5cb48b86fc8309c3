"""Video Loop Metrics: peak memory and time on an SVD-sized video, each run in a fresh process.

    .venv/bin/python bench/loop_metrics_memory.py [--frames 14 25 100] [--size 1024x576] [--old-frames 0]

Frames: a real clip (tests/data/video/vid_h264.mp4, 1280x720) resized to --size, float32 [T,H,W,3] as VAE Decode
gives them; the input image is its first frame. For each frame count a child process builds the frames, then runs
loop.metrics.loop_metrics (pixel embedding) and reports the peak resident set above the resident set with the
frames in memory (VmHWM, reset through /proc/self/clear_refs; ru_maxrss where that is missing), with glibc told to
mmap every large block (MALLOC_MMAP_THRESHOLD_) so freed tensors leave the resident set; a second child with the
default allocator gives the wall-clock and CPU time (mmap'ing every block would slow it down). --old-frames N also measures the computation the node used before (every frame pair's SSIM at once, float64)
on N frames, for comparison: it needs about 0.6 GB per frame at 1024x576, so keep N small.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _old_ssim(x, y):
    """The node's SSIM before: every pair at once, float64, a 2-D 11x11 Gaussian window."""
    import torch
    import torch.nn.functional as F
    k = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-k ** 2 / (2 * 1.5 ** 2))
    win = torch.outer(g, g) / torch.outer(g, g).sum()
    kernel = win.expand(3, 1, 11, 11).contiguous()
    a, b = x.permute(0, 3, 1, 2).double(), y.permute(0, 3, 1, 2).double()
    mu_a, mu_b = F.conv2d(a, kernel, groups=3), F.conv2d(b, kernel, groups=3)
    s_aa = F.conv2d(a * a, kernel, groups=3) - mu_a ** 2
    s_bb = F.conv2d(b * b, kernel, groups=3) - mu_b ** 2
    s_ab = F.conv2d(a * b, kernel, groups=3) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    smap = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return smap.mean(dim=(1, 2, 3)).float()


def child(frames_count: int, width: int, height: int, old: bool) -> dict:
    """One measurement in this process: build the frames, then measure one call."""
    import torch
    from clips import reset_peak, resized_clip, status_kib
    from pack_import import TEST_DATA, register_pack
    register_pack()
    from vcut.loop.metrics import loop_metrics

    frames = resized_clip(TEST_DATA / "video" / "vid_h264.mp4", frames_count, width, height)
    image = frames[:1].clone()
    gc.collect()
    before = reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    if old:
        value = float(_old_ssim(frames[:-1], frames[1:]).mean())
    else:
        value = loop_metrics(frames, image)["mean_ssim"]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    try:
        peak = status_kib("VmHWM")
    except KeyError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": "old (all pairs, float64)" if old else "now (pair by pair, float32)", "frames": frames_count,
            "size": f"{width}x{height}", "frames_mib": frames.numel() * 4 / 2 ** 20,
            "peak_above_frames_mib": (peak - before) / 1024, "wall_s": wall, "cpu_s": cpu, "mean_ssim": value,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[14, 25, 100])
    parser.add_argument("--size", default="1024x576", help="WIDTHxHEIGHT")
    parser.add_argument("--old-frames", type=int, default=0, help="also measure the old computation on N frames")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(**json.loads(args.child))))
        return
    width, height = (int(v) for v in args.size.lower().split("x"))
    runs = [(n, False) for n in args.frames] + ([(args.old_frames, True)] if args.old_frames else [])
    print(f"# Video Loop Metrics memory/time, {time.strftime('%Y-%m-%d')}, {platform.machine()} "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
    print("| method | frames | size | frames (MiB) | peak above the frames (MiB) | wall (s) | CPU (s) | mean SSIM |")
    print("|---|---|---|---|---|---|---|---|")
    for n, old in runs:
        spec = json.dumps({"frames_count": n, "width": width, "height": height, "old": old})
        results = []
        for mmap in (True, False):  # memory, then time
            env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
            if mmap:
                env["MALLOC_MMAP_THRESHOLD_"] = "65536"
            out = subprocess.run([sys.executable, __file__, "--child", spec], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                print(f"| {'old' if old else 'now'} | {n} | {args.size} | failed: {out.stderr.strip()[-300:]} |")
                break
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        else:
            r, timed = results
            print(f"| {r['method']} | {r['frames']} | {r['size']} | {r['frames_mib']:.0f} | "
                  f"{r['peak_above_frames_mib']:.0f} | {timed['wall_s']:.1f} | {timed['cpu_s']:.1f} | "
                  f"{r['mean_ssim']:.6f} |")


if __name__ == "__main__":
    main()
