"""GPU benchmark: whole SVD-XT videos through ComfyUI's own model class and KSampler, and the codec's GPU search.

Part 1, sampling: ComfyUI's SVD_img2vid model (comfy.supported_models.SVD_img2vid) built from SVD-XT's unet config
(the config ComfyUI detects from an SVD-XT checkpoint, checked below with comfy.model_detection) at full size,
seeded random weights (no checkpoint is needed: the cost of a forward pass does not depend on the weights),
25 frames at 1024x576, fp16, sampled by ComfyUI's KSampler (nodes.common_ksampler, euler / karras, cfg 2.5,
25 steps). Variants, chained through the nodes' own classes as a workflow chains them:
    baseline            the model as loaded
    exact / paper       VCUT Patch Model (mode exact / paper)
    exact + cut 17      ... then Cut Step Scheduler (cut_step 17: 16 guided steps, 9 conditional-only)
    paper + cut 17
    exact + cut 17 + EasyCache   ... then core's EasyCache node (comfy_extras/nodes_easycache.py, its defaults)
Every variant runs --repeats times, interleaved (all variants, then all again), after one short warm-up run each.
Reported: seconds per video (each run), the ratio to the baseline computed per repetition, peak GPU memory
(torch.cuda.max_memory_allocated, weights included) and how far the output latent is from the baseline's.

Part 2, codec: Motion Vector Encode's search on a 1920x1080 clip (vid_h264.mp4 upscaled): the torch exhaustive
search on the GPU (codec/torch_ops.py) beside the CPU paths (numpy/OpenCV fast and exhaustive, codec/blockmatch.py;
torch exhaustive on the CPU), best of --codec-repeats, with the GPU vectors checked equal to the CPU's exhaustive
ones and the encoding checked lossless.

Writes <out>/gpu_bench.md (the tables, rewritten after every repetition so a run cut short still leaves its rows)
and <out>/gpu_bench.json (every timing). The full-size run is one command on a lent H200 (see BENCHMARKS.md,
"GPU benchmark", and scripts/gpu_bench.sh); on the CPU at a reduced size it proves the path works:

    python bench/gpu_bench.py --out bench/out/gpu                       # full size, cuda, fp16
    python bench/gpu_bench.py --device cpu --dtype fp32 --size 128x72 --frames 4 --steps 4 --out bench/out/gpu-cpu
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pathlib
import platform
import statistics
import sys
import time

import torch

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]

# SVD-XT's UNet, as comfy.model_detection.detect_unet_config reads it from the svd_xt checkpoint (SVD, SVD-XT and
# SVD-XT 1.1 share this UNet; they differ in frames and training). Verified at run time: see check_unet_config.
SVD_XT_UNET = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 768, "in_channels": 8, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], "channel_mult": [1, 2, 4, 4],
    "transformer_depth_middle": 1, "use_linear_in_transformer": True, "context_dim": 1024,
    "extra_ff_mix_layer": True, "use_spatial_context": True, "merge_strategy": "learned_with_images",
    "merge_factor": 0.0, "video_kernel_size": [3, 1, 1], "use_temporal_resblock": True,
    "use_temporal_attention": True, "disable_temporal_crossattention": False,
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
VARIANTS = ("baseline", "exact", "paper", "exact + cut", "paper + cut", "exact + cut + EasyCache")


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1024x576, got {text!r}") from None
    if width % 8 or height % 8 or width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive multiples of 8 (latent = size / 8), got {text!r}")
    return width, height


def default_comfy() -> str:
    return os.environ.get("COMFYUI_PATH") or str(PACK_ROOT / ".gpu" / "ComfyUI")


def default_clip() -> str:
    for path in (PACK_ROOT / ".gpu" / "vid_h264.mp4", PACK_ROOT.parent / "shared" / "data" / "video" / "vid_h264.mp4"):
        if path.exists():
            return str(path)
    return str(PACK_ROOT / ".gpu" / "vid_h264.mp4")


# ---------------------------------------------------------------- ComfyUI

def init_comfy(root: str, device: str):
    """ComfyUI imported in-process (as tests/integration/harness.py does), and the pack loaded by ComfyUI's own
    custom-node loader. Returns ComfyUI's `nodes` module."""
    if not (pathlib.Path(root) / "comfy").is_dir():
        sys.exit(f"--comfy must point at a ComfyUI checkout (0.8.0 tested), got {root}: run scripts/gpu_bench_prep.sh "
                 f"or set COMFYUI_PATH")
    sys.path.insert(0, root)
    import utils.extra_config  # noqa: F401  (as main.py does: ComfyUI's utils package before comfy/utils.py)
    from comfy.cli_args import args
    args.cpu = device == "cpu"
    import comfy.utils
    import nodes
    comfy.utils.PROGRESS_BAR_ENABLED = False  # no tqdm bars in the log
    if not asyncio.run(nodes.load_custom_node(str(PACK_ROOT))):
        sys.exit("ComfyUI's custom-node loader failed to load the pack (see the log above)")
    return nodes


def check_unet_config(config: dict, model_class: bool = True) -> None:
    """The config must be what ComfyUI detects from the UNet's state dict, and (model_class) must make ComfyUI pick
    SVD_img2vid, as it does for an SVD-XT checkpoint: build the UNet on the meta device (shapes, no memory), run
    comfy.model_detection on its state dict. (A shrunk width is detected alike but matches no model class.)"""
    import comfy.model_detection
    import comfy.supported_models
    meta_model = comfy.supported_models.SVD_img2vid(dict(config)).get_model({}, device=torch.device("meta"))
    state_dict = meta_model.diffusion_model.state_dict()
    detected = comfy.model_detection.detect_unet_config(state_dict, "")
    differs = {k: (v, detected.get(k)) for k, v in config.items() if detected.get(k) != v}
    if differs:
        raise RuntimeError(f"SVD_XT_UNET differs from what ComfyUI detects from its own state dict: {differs}")
    if model_class:
        chosen = comfy.model_detection.model_config_from_unet_config(detected, state_dict)
        if type(chosen).__name__ != "SVD_img2vid":
            raise RuntimeError(f"ComfyUI would load this UNet as {type(chosen).__name__}, not SVD_img2vid")
    params = sum(p.numel() for p in meta_model.diffusion_model.parameters())
    print(f"unet config (model_channels {config['model_channels']}) = ComfyUI's detection of it"
          + (", model class SVD_img2vid" if model_class else "") + f", {params / 1e9:.3f} B parameters")


def unet_config(model_channels: int) -> dict:
    """SVD-XT's config; another model_channels only for a functional proof on a CPU (all else as SVD-XT)."""
    return {**SVD_XT_UNET, "model_channels": model_channels}


def build_svd_xt(config_dict: dict, device: str, dtype: torch.dtype, seed: int):
    """ComfyUI's SVD_img2vid from `config_dict` in a ModelPatcher on `device`, seeded random weights."""
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.SVD_img2vid(dict(config_dict))
    config.set_inference_dtype(dtype, None)
    torch_device = torch.device(device)
    model = config.get_model({}, device=torch_device)
    # comfy.ops.disable_weight_init leaves weights uninitialised: fill them, seeded (scaled so that activations
    # stay finite through the 1.5B-parameter UNet in fp16)
    from vcut.bench.vcut_wallclock import fill_weights_
    fill_weights_(model.diffusion_model, seed)
    model.diffusion_model.eval()
    # offload device = load device: switching between the variants' clones moves no weights, as on a card where
    # ComfyUI keeps the one model loaded between prompts
    return comfy.model_patcher.ModelPatcher(model, load_device=torch_device, offload_device=torch_device)


def svd_conds(frames: int, width: int, height: int, seed: int):
    """positive, negative, latent as SVD_img2vid_Conditioning returns them (CLIP image embedding (1, 1, 1024), the
    image's VAE latent as concat_latent_image, zeros for the negative; an empty latent of `frames` frames)."""
    generator = torch.Generator().manual_seed(seed)
    pooled = torch.randn(1, 1, SVD_XT_UNET["context_dim"], generator=generator)
    image_latent = torch.randn(1, 4, height // 8, width // 8, generator=generator)
    extra = {"motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}
    positive = [[pooled, {**extra, "concat_latent_image": image_latent}]]
    negative = [[torch.zeros_like(pooled), {**extra, "concat_latent_image": torch.zeros_like(image_latent)}]]
    return positive, negative, {"samples": torch.zeros(frames, 4, height // 8, width // 8)}


def node_output(output):
    """First output of a V3 node's execute (io.NodeOutput) or a V1 tuple."""
    return output.args[0] if hasattr(output, "args") else output[0]


def build_variants(nodes, model, cut_step: int) -> dict:
    """Each variant's MODEL, chained through the nodes' public classes as a workflow chains the nodes."""
    from comfy_extras.nodes_easycache import EasyCacheNode
    patch = nodes.NODE_CLASS_MAPPINGS["VCUTPatchModel"]
    cut = nodes.NODE_CLASS_MAPPINGS["VCUTCutStepScheduler"]

    def with_cut(m):
        return node_output(cut.execute(m, cut_step=cut_step, cut_fraction=0.0, after_cut="drop", auto_threshold=0.0))
    exact = node_output(patch.execute(model, mode="exact"))
    paper = node_output(patch.execute(model, mode="paper"))
    exact_cut = with_cut(exact)
    easycache = node_output(EasyCacheNode.execute(exact_cut, reuse_threshold=0.2, start_percent=0.15,
                                                  end_percent=0.95, verbose=False))
    return {"baseline": model, "exact": exact, "paper": paper, "exact + cut": exact_cut,
            "paper + cut": with_cut(paper), "exact + cut + EasyCache": easycache}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class UNetCalls:
    """Counts the diffusion model's forward calls and the rows they carry (frames x conds), by a forward pre-hook
    on the one diffusion model that every variant's clone shares (no ComfyUI wrapper slot is taken)."""

    def __init__(self, model):
        self.calls = self.rows = 0
        model.model.diffusion_model.register_forward_pre_hook(self._count)

    def _count(self, module, args):
        self.calls += 1
        self.rows += args[0].shape[0]

    def take(self) -> tuple[int, int]:
        counts, (self.calls, self.rows) = (self.calls, self.rows), (0, 0)
        return counts


def sample_once(nodes, model, conds, steps: int, device: str, seed: int):
    """One whole video through ComfyUI's KSampler: (seconds, peak GPU bytes or None, output latent)."""
    positive, negative, latent = conds
    synchronize(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    out = nodes.common_ksampler(model, seed, steps, 2.5, "euler", "karras", positive, negative, latent)[0]["samples"]
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    return seconds, peak, out.float().cpu()


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().mean() / b.abs().mean().clamp_min(1e-12))


def sampling_table(runs: dict, diffs: dict, finite: dict, setup: str, note: str = "") -> str:
    lines = [f"### Sampling: {setup}", "",
             "| variant | s/video (each run) | median s/video | ratio to baseline (median, min-max of the per-run "
             "ratios) | peak GPU memory (GiB) | UNet calls / rows per video | output vs baseline (mean abs diff / mean "
             "abs) |",
             "|---|---|---:|---|---:|---:|---:|"]
    base = runs.get("baseline", [])
    for variant, entries in runs.items():
        if not entries:
            continue
        seconds = [e["seconds"] for e in entries]
        ratios = [e["seconds"] / b["seconds"] for e, b in zip(entries, base)]
        ratio = (f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})" if ratios else "-")
        if variant == "baseline":
            ratio = "1"
        peaks = [e["peak_bytes"] for e in entries if e["peak_bytes"] is not None]
        peak = f"{max(peaks) / 2**30:.2f}" if peaks else "- (CPU)"
        diff = "-" if variant == "baseline" else f"{diffs.get(variant, float('nan')):.2e}"
        if not finite.get(variant, True):
            diff += " (output not finite)"
        calls = f"{entries[-1]['unet_calls']} / {entries[-1]['unet_rows']}"
        lines.append(f"| {variant} | {' / '.join(f'{s:.2f}' for s in seconds)} | {statistics.median(seconds):.2f} "
                     f"| {ratio} | {peak} | {calls} | {diff} |")
    if note:
        lines += ["", note]
    return "\n".join(lines)


def run_sampling(args, nodes, report, deadline: float) -> None:
    """The six variants, interleaved; repetitions stop early if the next would pass `deadline` (perf_counter)."""
    width, height = args.size
    dtype = DTYPES[args.dtype]
    check_unet_config(SVD_XT_UNET)
    config = unet_config(args.model_channels)
    if config != SVD_XT_UNET:
        check_unet_config(config, model_class=False)
    t0 = time.perf_counter()
    model = build_svd_xt(config, args.device, dtype, args.seed)
    synchronize(args.device)
    print(f"model built and filled in {time.perf_counter() - t0:.1f} s")
    variants = build_variants(nodes, model, args.cut_step)
    variants = {k: v for k, v in variants.items() if k in args.variants}
    conds = svd_conds(args.frames, width, height, args.seed)
    import comfy.model_management
    attention = "pytorch (sdpa)" if comfy.model_management.pytorch_attention_enabled() else "ComfyUI default"
    unet = ("SVD-XT UNet" if config == SVD_XT_UNET else
            f"SVD-XT UNet shrunk to model_channels {args.model_channels} (functional proof, not SVD-XT's cost)")
    setup = (f"{unet} (ComfyUI SVD_img2vid, random weights), {args.frames} frames at {width}x{height}, "
             f"{args.dtype}, KSampler euler/karras cfg 2.5, {args.steps} steps, cut at step {args.cut_step}, "
             f"{args.device}, attention {attention}, {args.repeats} interleaved repetitions after a "
             f"{args.warmup_steps}-step warm-up per variant")
    print(setup, flush=True)
    counter = UNetCalls(model)
    for name, model_variant in variants.items():  # warm-up: loads the model, fills the kernels' caches
        seconds, _, _ = sample_once(nodes, model_variant, conds, args.warmup_steps, args.device, args.seed)
        print(f"warm-up {name}: {seconds:.2f} s", flush=True)
    counter.take()
    runs = {name: [] for name in variants}
    outputs, diffs, finite = {}, {}, {}
    note, last_repetition = "", 0.0
    for repetition in range(args.repeats):
        started = time.perf_counter()
        if repetition and deadline - started < last_repetition:
            note = (f"Stopped after {repetition} repetition(s): another would pass --max-minutes "
                    f"{args.max_minutes:g} (one took {last_repetition:.0f} s).")
            print(note, flush=True)
            break
        for name, model_variant in variants.items():
            seconds, peak, out = sample_once(nodes, model_variant, conds, args.steps, args.device, args.seed)
            calls, rows = counter.take()
            runs[name].append({"repetition": repetition + 1, "seconds": seconds, "peak_bytes": peak,
                               "unet_calls": calls, "unet_rows": rows})
            finite[name] = finite.get(name, True) and bool(torch.isfinite(out).all())
            outputs.setdefault(name, out)
            if name != "baseline" and "baseline" in outputs:
                diffs[name] = relative_difference(outputs[name], outputs["baseline"])
            print(f"rep {repetition + 1} {name}: {seconds:.2f} s"
                  + (f", peak {peak / 2**30:.2f} GiB" if peak is not None else ""), flush=True)
        report["sampling"] = {"setup": setup, "runs": runs, "output_vs_baseline": diffs, "finite": finite}
        last_repetition = time.perf_counter() - started
        report["sampling_md"] = sampling_table(runs, diffs, finite, setup)
        write_report(args.out, report)
    if note:
        report["sampling_md"] = sampling_table(runs, diffs, finite, setup, note)
        write_report(args.out, report)


# ---------------------------------------------------------------- codec

def run_codec(args, report) -> None:
    import cv2
    import numpy as np
    from vcut.bench.clips import read_frames
    from vcut.codec import decode, encode, torch_ops
    width, height = args.codec_size
    raw = read_frames(args.codec_clip, args.codec_frames, 30)
    frames = torch.from_numpy(np.stack(
        [cv2.resize(f, (width, height), interpolation=cv2.INTER_CUBIC) for f in raw]))
    pairs = frames.shape[0] - 1
    cpu_pairs = min(args.codec_cpu_pairs, pairs)
    few = frames[:cpu_pairs + 1]
    fast_device = args.device if args.device.startswith("cuda") else "cpu"
    backend = "auto" if fast_device != "cpu" else "torch"  # on a CPU-only proof, the torch path runs on the CPU
    jobs = {
        f"torch exhaustive 16x16 +-16 on {fast_device} (codec/torch_ops.py), {pairs} pairs":
            (pairs, lambda: encode(frames, 16, 16, "exhaustive", fast_device, backend=backend)),
        f"numpy/OpenCV fast 16x16 +-16 on cpu, 2 threads (codec/blockmatch.py), {pairs} pairs":
            (pairs, lambda: encode(frames, 16, 16, "fast", "cpu", threads=2)),
        f"numpy/OpenCV exhaustive 16x16 +-16 on cpu, 2 threads, {cpu_pairs} pairs":
            (cpu_pairs, lambda: encode(few, 16, 16, "exhaustive", "cpu", threads=2)),
    }
    best, outs = {k: float("inf") for k in jobs}, {}
    for _ in range(args.codec_repeats):  # interleaved; the best run is the least disturbed one
        for name, (_n, fn) in jobs.items():
            synchronize(fast_device)
            start = time.perf_counter()
            outs[name] = fn()
            synchronize(fast_device)
            best[name] = min(best[name], time.perf_counter() - start)
    start = time.perf_counter()  # the same torch search on the CPU, search only, once
    for i in range(cpu_pairs):
        torch_ops.exhaustive_search(torch_ops.luma(frames[i + 1]), torch_ops.luma(frames[i]), 16, 16)
    torch_cpu = (f"torch exhaustive 16x16 +-16 on cpu, search only, {cpu_pairs} pairs, 1 run",
                 cpu_pairs / (time.perf_counter() - start))
    names = list(jobs)
    gpu_mv, gpu_res = outs[names[0]]
    cpu_mv = outs[names[2]][0]
    same_vectors = torch.equal(gpu_mv.vectors[:cpu_pairs].cpu(), cpu_mv.vectors.cpu())
    lossless = torch.equal(decode(frames[0], gpu_mv, gpu_res), frames)
    device_name = torch.cuda.get_device_name() if fast_device != "cpu" else platform.processor() or "cpu"
    lines = [f"### Codec: Motion Vector Encode on {width}x{height} (vid_h264.mp4 upscaled, {args.codec_frames} "
             f"frames), {device_name}, {os.cpu_count()} CPU cores, best of {args.codec_repeats} interleaved runs", "",
             "| method | frame pairs/s | ratio to numpy/OpenCV fast |", "|---|---:|---:|"]
    fps = {name: jobs[name][0] / best[name] for name in jobs}
    fps[torch_cpu[0]] = torch_cpu[1]
    reference = fps[names[1]]
    for name, value in fps.items():
        lines.append(f"| {name} | {value:.2f} | {value / reference:.2f} |")
    lines += ["", f"torch search vectors equal to numpy/OpenCV exhaustive ({cpu_pairs} pairs): "
              f"{'yes' if same_vectors else 'NO'}; decode(encode(video)) equals the video: "
              f"{'yes' if lossless else 'NO'}"]
    report["codec"] = {"fps": fps, "same_vectors": same_vectors, "lossless": lossless, "size": [width, height]}
    report["codec_md"] = "\n".join(lines)
    write_report(args.out, report)


# ---------------------------------------------------------------- report

def write_report(out: pathlib.Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"## GPU benchmark run {report['date']}", "", report["machine"], "", f"Command: `{report['command']}`"]
    for key in ("codec_md", "sampling_md"):
        if key in report:
            parts += ["", report[key]]
    (out / "gpu_bench.md").write_text("\n".join(parts) + "\n")
    (out / "gpu_bench.json").write_text(json.dumps({k: v for k, v in report.items() if not k.endswith("_md")},
                                                   indent=1, default=str))


def machine_line(device: str) -> str:
    line = f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU cores"
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        line = f"{props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, " + line
    else:
        cpu = platform.processor() or platform.machine()
        line = f"CPU only ({cpu}, torch threads {torch.get_num_threads()}), " + line
    return line


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, required=True, help="folder for gpu_bench.md / gpu_bench.json")
    parser.add_argument("--comfy", default=default_comfy(), help="ComfyUI checkout (default: .gpu/ComfyUI, made by "
                        "scripts/gpu_bench_prep.sh; or $COMFYUI_PATH)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (functional proof only)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--size", type=parse_size, default=(1024, 576), help="WIDTHxHEIGHT (default 1024x576)")
    parser.add_argument("--frames", type=int, default=25, help="video frames (SVD-XT: 25)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--model-channels", type=int, default=SVD_XT_UNET["model_channels"],
                        help="UNet width (SVD-XT: 320); smaller only for a functional proof on a CPU (a multiple "
                             "of 64: ComfyUI gives every 64 channels one attention head)")
    parser.add_argument("--cut-step", type=int, default=17)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default); 1 for a CPU proof on a busy machine, where "
                             "OpenMP threads spin-waiting on each other can make calls 30x slower")
    parser.add_argument("--max-minutes", type=float, default=7.5,
                        help="whole run's time limit: the sampling part starts no repetition that would pass it "
                             "(default 7.5: the run fits a 10-minute device call with its start)")
    parser.add_argument("--no-sampling", action="store_true")
    parser.add_argument("--no-codec", action="store_true")
    parser.add_argument("--codec-clip", default=default_clip())
    parser.add_argument("--codec-size", type=parse_size, default=(1920, 1080))
    parser.add_argument("--codec-frames", type=int, default=30)
    parser.add_argument("--codec-cpu-pairs", type=int, default=4,
                        help="frame pairs for the slow CPU exhaustive searches")
    parser.add_argument("--codec-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; valid: {', '.join(VARIANTS)}")
    if "baseline" not in args.variants:
        parser.error("--variants must include baseline (the ratios are to it)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch; use --device cpu for a functional proof")
    if args.model_channels <= 0 or args.model_channels % 64:
        parser.error(f"--model-channels must be a positive multiple of 64, got {args.model_channels}")
    if args.device == "cpu" and args.dtype == "fp16":
        parser.error("--device cpu needs --dtype fp32 (or bf16)")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine_line(args.device),
              "command": "python bench/gpu_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    print(report["machine"], flush=True)
    started = time.perf_counter()
    nodes = init_comfy(args.comfy, args.device)  # also makes the pack importable as its own package
    sys.path.insert(0, str(PACK_ROOT / "bench"))
    from pack_import import register_pack
    register_pack()
    if not args.no_codec:  # first: short and bounded, so a long sampling part cannot crowd it out
        run_codec(args, report)
    if not args.no_sampling:
        run_sampling(args, nodes, report, deadline=started + 60 * args.max_minutes)
    report["total_seconds"] = time.perf_counter() - started
    write_report(args.out, report)
    print((args.out / "gpu_bench.md").read_text())
    print(f"total {report['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
