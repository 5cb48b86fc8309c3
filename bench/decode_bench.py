"""Seamless Video Decode benchmark: error at chunk borders, time and peak memory, ours vs ComfyUI's chunking.

    COMFYUI_PATH=/path/to/ComfyUI <ComfyUI's python> bench/decode_bench.py [--frames 25 70] [--latent 4]
        [--chunk 4] [--contexts 0 1 2 4 8] [--blend 2]
    ... bench/decode_bench.py --timing 3 --frames 25    # only the time of the overlap, best of 3 interleaved runs

SVD's video VAE as ComfyUI 0.8.0 builds it (comfy.sd.VAE, SVD's full-width config, VideoDecoder; seeded random
weights: bench/svd_vae.py), on the CPU in float32, a random latent of `--latent` x `--latent` per frame. For each
video length and each context C:
- ComfyUI's chunking: VAE.decode with batch_number = n decodes samples[x:x+n] one after another, each as a whole
  video; emulated exactly by calling vae.decode on those slices. Rows for n = chunk (what a small card gets) and,
  for the --same-memory lengths, n = chunk + 2C (the same frames per call, so the same memory, as ours);
- ours: the node's path (decode.decode_chunked with first_stage_model.decode and process_output), chunk_frames =
  chunk + 2C, context C: every call keeps `chunk` centre frames (more at the video's ends);
- ComfyUI's out-of-memory fallback: VAE.decode_tiled_ runs comfy.utils.tiled_scale, which decodes the batch one
  frame at a time (each frame a 1-frame video), three tilings averaged; at this size one tile covers the frame, so
  it is emulated by vae.decode on each frame alone (a third of the calls; equal up to the rounding of (3a)/3);
- ours with --blend for the largest context, for the --same-memory lengths.
Error = |images - single full decode| on 0..1 pixels at the frames next to each of that method's chunk borders
(max and mean), and over all frames. Time: wall clock and process CPU time (all threads; steadier than the wall
clock on a shared machine) of the whole decode, and the frames decoded (calls x frames per call), the load-free
measure of the work; ratios against ComfyUI's chunks of `chunk`. Peak memory: the process's peak resident
set (VmHWM, reset through /proc/self/clear_refs) above its size before the decode; glibc is told to mmap every large
block (MALLOC_MMAP_THRESHOLD_) so freed tensors leave the resident set and each run is measured on its own.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import re
import sys
import time

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # before torch allocates anything: re-run with a fixed threshold
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import torch  # noqa: E402  (after the sys.path / package setup above)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pack_import import register_pack  # noqa: E402  (after the sys.path / package setup above)


def start_comfy():
    root = os.environ.get("COMFYUI_PATH")
    if not root:
        sys.exit("set COMFYUI_PATH to a ComfyUI checkout (0.8.0) and run with ComfyUI's Python")
    sys.path.insert(0, root)
    import utils.extra_config  # noqa: F401  (ComfyUI's utils package before comfy/utils.py, as main.py does)
    from comfy.cli_args import args
    args.cpu = True


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


def measured(fn):
    """(result, (wall seconds, CPU seconds), peak MiB above the resident set before the call)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident set
    before = rss_kib("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        out = fn()
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    return out, seconds, (rss_kib("VmHWM") - before) / 1024


def borders_of(starts, frames):
    return sorted({f for b in starts for f in (b - 1, b) if 0 < b < frames})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[25, 70])
    parser.add_argument("--latent", type=int, default=4, help="latent height = width (pixels = 8x)")
    parser.add_argument("--chunk", type=int, default=4, help="centre frames per call (ComfyUI's chunk size)")
    parser.add_argument("--contexts", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    parser.add_argument("--blend", type=int, default=2, help="one extra row: the largest context with this blend")
    parser.add_argument("--same-memory", type=int, nargs="*", default=[25],
                        help="video lengths that also get ComfyUI rows at ours' frames per call, and the blend row")
    parser.add_argument("--timing", type=int, default=0, metavar="REPEATS",
                        help="only time ComfyUI's chunks and ours per context: best of REPEATS runs, interleaved")
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()

    start_comfy()
    register_pack()
    from svd_vae import svd_video_vae

    from vcut.decode import decode_chunked, plan_spans

    torch.set_num_threads(os.cpu_count() or 1)
    vae = svd_video_vae(opts.seed)
    params = sum(p.numel() for p in vae.first_stage_model.decoder.parameters())
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
          f"SVD video VAE decoder {params / 1e6:.1f}M parameters (full width), float32, random weights; latent "
          f"{opts.latent}x{opts.latent} = {8 * opts.latent}x{8 * opts.latent} pixels")

    def decode_part(part):  # the node's call, as VAE.decode makes it
        return vae.first_stage_model.decode(part.to(vae.vae_dtype).to(vae.device)).to(vae.output_device).float()

    def comfy_chunks(z, n):
        return torch.cat([vae.decode(z[x:x + n]) for x in range(0, z.shape[0], n)])

    k = opts.chunk
    if opts.timing:
        time_overlap(opts, vae, decode_part, comfy_chunks, decode_chunked, plan_spans)
        return
    header = ("| frames | method | frames/call | calls | border max | border mean | all max | all mean "
              "| frames decoded (ratio) | wall s (ratio) | CPU s (ratio) | peak MiB | peak vs full |")
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for frames in opts.frames:
        z = torch.randn(frames, 4, opts.latent, opts.latent, generator=torch.Generator().manual_seed(frames))
        full, full_s, full_mib = measured(lambda: vae.decode(z))

        def row(name, images, per_call, calls, starts, seconds, mib, base_s):
            err = (images - full).abs()  # noqa: F821  (row() runs before the del at the end of this iteration)
            borders = borders_of(starts, frames)
            b = err[borders] if borders else err[:0]
            work = per_call * calls if name.startswith("ours") else frames  # a plain split decodes each frame once
            ratios = [f"{work} ({work / frames:.2f})"] + [
                f"{v:.1f}" + (f" ({v / b_v:.2f})" if base_s else "") for v, b_v in zip(seconds, base_s or seconds, strict=False)]
            print(f"| {frames} | {name} | {per_call} | {calls} | "
                  + (f"{b.max():.4f} | {b.mean():.5f}" if borders else "- | -")
                  + f" | {err.max():.4f} | {err.mean():.5f} | " + " | ".join(ratios)
                  + f" | {mib:.0f} | {mib / full_mib:.2f} |", flush=True)

        row("single full decode", full, frames, 1, [], full_s, full_mib, None)
        tiled, s, mib = measured(lambda: comfy_chunks(z, 1))
        row("ComfyUI OOM fallback (tiled: frame by frame)", tiled, 1, frames, range(1, frames), s, mib, None)
        base, base_s, mib = measured(lambda: comfy_chunks(z, k))
        row(f"ComfyUI chunks of {k}", base, k, -(-frames // k), range(k, frames, k), base_s, mib, base_s)
        for context in opts.contexts:
            window = k + 2 * context
            if window >= frames:
                print(f"| {frames} | ours, context {context} | {window} | - | (one call: the full decode) |")
                continue
            extra = frames in opts.same_memory
            if context and extra:
                same, s, mib = measured(lambda: comfy_chunks(z, window))
                row(f"ComfyUI chunks of {window}", same, window, -(-frames // window), range(window, frames, window),
                    s, mib, base_s)
            plan = plan_spans(frames, window, context)
            ours, s, mib = measured(lambda: vae.process_output(decode_chunked(z, decode_part, window, context))
                                    .movedim(1, -1))
            row(f"ours, context {context}", ours, window, len(plan), [p.keep_start for p in plan], s, mib, base_s)
            if extra and 0 < opts.blend <= context == max(opts.contexts):
                ours, s, mib = measured(lambda: vae.process_output(
                    decode_chunked(z, decode_part, window, context, opts.blend)).movedim(1, -1))
                row(f"ours, context {context}, blend {opts.blend}", ours, window, len(plan),
                    [p.keep_start for p in plan], s, mib, base_s)
        del full, tiled, base


def time_overlap(opts, vae, decode_part, comfy_chunks, decode_chunked, plan_spans):
    """Wall-clock cost of the overlap: every method once per round, rounds interleaved (all see the same background
    load), the best of --timing rounds each."""
    k = opts.chunk
    print(f"| frames | method | frames decoded (ratio) | best wall s of {opts.timing} | ratio |")
    print("|---|---|---|---|---|")
    for frames in opts.frames:
        z = torch.randn(frames, 4, opts.latent, opts.latent, generator=torch.Generator().manual_seed(frames))
        jobs = {f"ComfyUI chunks of {k}": (frames, lambda: comfy_chunks(z, k))}
        for context in opts.contexts:
            window = k + 2 * context
            if window < frames:
                work = window * len(plan_spans(frames, window, context))
                jobs[f"ours, context {context}"] = (work, lambda w=window, c=context: vae.process_output(
                    decode_chunked(z, decode_part, w, c)).movedim(1, -1))
        best = {name: float("inf") for name in jobs}
        for _ in range(opts.timing):
            for name, (_, fn) in jobs.items():
                best[name] = min(best[name], measured(fn)[1][0])
        base = best[f"ComfyUI chunks of {k}"]
        for name, (work, _) in jobs.items():
            print(f"| {frames} | {name} | {work} ({work / frames:.2f}) | {best[name]:.1f} | {best[name] / base:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
