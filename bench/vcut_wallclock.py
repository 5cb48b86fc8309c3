"""VCUT on the CPU, by the clock: whole 25-step videos, variants interleaved, repeated, with the spread reported.

diffusers' UNetSpatioTemporalConditionModel (SVD's architecture narrowed from 320 to 32 channels, random weights,
so that 24 whole videos fit a few minutes on 2 cores while per-pixel work still dominates a call, as at full size),
sampled by a plain Euler loop on Karras sigmas with SVD's v-prediction preconditioning and classifier-free
guidance, as ComfyUI's KSampler does: a guided step runs the conditional and unconditional rows together (batch 2),
a step after the cut (cut/schedule.py's CutSchedule) only the conditional row (batch 1). Variants: the unpatched UNet,
VCUT exact and VCUT paper (diffusers_reference.patch_unet_), each without and with the cut, and the UNet Feature
Cache (diffusers_reference.step: DeepCache, interval 3, branch 0) on the baseline and on VCUT exact with the cut.

Timing is noisy on a shared machine, so: every repetition runs all eight variants back to back (in a rotated order),
the ratio to the baseline is taken within each repetition, and a ratio is printed only when its min-max spread over
the repetitions is small; otherwise the table says that the spread is too large for a conclusion.
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import dataclass

import torch

from ..cache import deepcache
from ..cut.schedule import CutSchedule
from . import diffusers_reference

SIGMA_MIN, SIGMA_MAX, RHO = 0.002, 700.0, 7.0  # SVD's sampling settings (ComfyUI's SVD_img2vid, Karras schedule)
CFG = 2.5
CACHE_INTERVAL, CACHE_BRANCH = 3, 0  # the feature-cache variants: the setting of the cache's MAC target
SPREAD_LIMIT = 0.10  # a ratio is reported only if its per-repetition values span less than this (e.g. 0.80-0.90)


def fill_weights_(module: torch.nn.Module, seed: int) -> None:
    """Seeded random weights that keep activations at a sane scale through a deep UNet: matrices and kernels
    N(0, 1/fan_in), norm scales 1, biases and other vectors N(0, 0.02)."""
    device = next(module.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=generator, device=device) / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=generator, device=device) * 0.02)


def narrow_svd_unet(channels: int = 32, seed: int = 0):
    """SVD's UNet (diffusers' default config: 4 levels, channel multipliers 1-2-4-4, one-token 1024-d image
    context) with `channels` instead of 320 in the first level and attention heads of min(channels, 64) channels
    (SVD: 64); seeded random weights."""
    from diffusers import UNetSpatioTemporalConditionModel
    head = min(channels, 64)
    if channels < 32 or channels % head:
        raise ValueError(f"channels must be 32 or a multiple of 64 (attention heads of 64 channels), got {channels}")
    widths = (channels, 2 * channels, 4 * channels, 4 * channels)
    unet = UNetSpatioTemporalConditionModel(block_out_channels=widths,
                                            num_attention_heads=tuple(w // head for w in widths))
    fill_weights_(unet, seed)
    return unet.eval()


def karras_sigmas(steps: int) -> torch.Tensor:
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = SIGMA_MIN ** (1 / RHO), SIGMA_MAX ** (1 / RHO)
    return torch.cat([(hi + ramp * (lo - hi)) ** RHO, torch.zeros(1, dtype=torch.float64)])


@dataclass
class VideoInputs:
    noise: torch.Tensor          # [1, F, 4, h, w]
    image_latent: torch.Tensor   # [1, F, 4, h, w] the conditioning image's latent on every frame
    contexts: torch.Tensor       # [2, 1, 1024] CLIP image embedding (cond), zeros (uncond)
    time_ids: torch.Tensor       # [2, 3] fps, motion bucket, noise augmentation


def video_inputs(frames: int, height: int, width: int, seed: int = 0, context_dim: int = 1024) -> VideoInputs:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 1, 4, height // 8, width // 8, generator=g).expand(1, frames, -1, -1, -1)
    embedding = torch.randn(1, 1, context_dim, generator=g)
    return VideoInputs(torch.randn(1, frames, 4, height // 8, width // 8, generator=g), image.contiguous(),
                       torch.cat([embedding, torch.zeros_like(embedding)]), torch.tensor([[6.0, 127.0, 0.0]] * 2))


@torch.no_grad()
def sample_video(unet, inputs: VideoInputs, steps: int, cut_step: int, cache_interval: int = 1) -> torch.Tensor:
    """One video: Euler on Karras sigmas, v-prediction (EDM preconditioning, as SVD), CFG on the guided steps;
    steps >= cut_step run the conditional row only (VCUT Eq. 4). cache_interval > 1: the feature cache, full steps
    by cache/deepcache.full_steps, partial steps with the kept feature's conditional rows after the cut (DeepCache
    Eq. 5). Returns the final latent [1, F, 4, h, w]."""
    sigmas = karras_sigmas(steps)
    run = CutSchedule(cut_step).new_run()
    full = set(deepcache.full_steps(steps, cache_interval))
    kept = None
    frames = inputs.noise.shape[1]
    x = inputs.noise * sigmas[0]
    uncond_image = torch.zeros_like(inputs.image_latent)
    for i in range(steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        c_in, c_skip, c_out = 1 / math.sqrt(sigma ** 2 + 1), 1 / (sigma ** 2 + 1), -sigma / math.sqrt(sigma ** 2 + 1)
        rows = 2 if run.is_guided(i + 1) else 1
        scaled = torch.cat([x * c_in] * rows)
        image = torch.cat([inputs.image_latent, uncond_image][:rows])
        timestep = torch.full((rows,), 0.25 * math.log(sigma))
        args = (torch.cat([scaled, image], dim=2), timestep, inputs.contexts[:rows], inputs.time_ids[:rows])
        if cache_interval == 1:
            v = unet(*args).sample
        elif i + 1 in full:
            v, kept = diffusers_reference.step(unet, *args, CACHE_BRANCH)
        else:  # the batch is flattened row by row: the conditional row's frames come first
            v, _ = diffusers_reference.step(unet, *args, CACHE_BRANCH, cached=kept[:rows * frames])
        denoised = x * c_skip + v * c_out  # [rows, F, 4, h, w]
        if rows == 2:
            denoised = denoised[1:] + CFG * (denoised[:1] - denoised[1:])
        x = x + (x - denoised) / sigma * (sigma_next - sigma)
    return x


def variants(unet, steps: int, cut_step: int) -> dict:
    """{name: (unet, cut step, cache interval)}: baseline / exact / paper (VCUT on copies), each with no cut and
    with the cut; the feature cache alone and with exact + the cut."""
    import copy
    models = {"baseline": unet}
    for mode in ("exact", "paper"):
        models[mode] = copy.deepcopy(unet)
        diffusers_reference.patch_unet_(models[mode], mode)
    out = {}
    for name, model in models.items():
        out[name] = (model, steps + 1, 1)
        out[f"{name} + cut {cut_step}"] = (model, cut_step, 1)
    out[f"cache N={CACHE_INTERVAL}"] = (unet, steps + 1, CACHE_INTERVAL)
    out[f"exact + cut {cut_step} + cache N={CACHE_INTERVAL}"] = (models["exact"], cut_step, CACHE_INTERVAL)
    return out


def measure(frames=4, height=128, width=128, channels=32, steps=25, cut_step=17, repeats=3, threads=1, seed=0,
            log=print) -> dict:
    """Seconds of whole videos per variant and repetition (all variants in every repetition, order rotated).

    threads: torch CPU threads while measuring. 1 by default: on a shared machine, OpenMP threads spin-waiting on
    each other made one UNet call 30x slower with 2 threads than with 1 (37 s vs 1.1 s, 2026-11-29, load 12 on 2
    cores), which swamps any difference between the variants."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(frames, height, width, channels, steps, cut_step, repeats, seed, log)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(frames, height, width, channels, steps, cut_step, repeats, seed, log) -> dict:
    unet = narrow_svd_unet(channels, seed)
    runs = variants(unet, steps, cut_step)
    inputs = video_inputs(frames, height, width, seed)
    names = list(runs)
    outputs = {}
    for model, cut, interval in runs.values():  # warm-up: one 2-step video each (allocator, kernels' first use)
        sample_video(model, inputs, 2, min(cut, 3), interval)
    times = {name: [] for name in names}
    cpu_times = {name: [] for name in names}
    load = [os.getloadavg()[0]]
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]  # rotated: no variant always runs first
        for name in order:
            model, cut, interval = runs[name]
            start, cpu_start = time.perf_counter(), time.process_time()
            outputs[name] = sample_video(model, inputs, steps, cut, interval)
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
        log(f"  repetition {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1]:.1f}s" for n in names))
        load.append(os.getloadavg()[0])
    base = outputs["baseline"]
    exact_diff = float((outputs["exact"] - base).abs().max() / base.abs().max())
    return {"times": times, "cpu_times": cpu_times, "load": load, "exact_vs_baseline": exact_diff, "frames": frames,
            "height": height, "width": width, "channels": channels, "steps": steps, "cut_step": cut_step,
            "repeats": repeats, "params": sum(p.numel() for p in unet.parameters()), "threads": torch.get_num_threads()}


def ratio_cell(ratios: list[float]) -> str:
    """The per-repetition ratios (each variant over the baseline of the same repetition, so load that changes
    slowly cancels) as a verdict: a ratio with its range when the range is narrow and clear of 1; otherwise a plain
    statement that no conclusion can be drawn, and why."""
    lo, hi, mid = min(ratios), max(ratios), statistics.median(ratios)
    if len(ratios) < 2:
        return f"{mid:.3f} (one repetition: no spread, no conclusion)"
    if hi - lo >= SPREAD_LIMIT:
        return f"spread too large for a conclusion ({lo:.2f}-{hi:.2f})"
    if lo <= 1.0 <= hi:
        return f"no difference measurable ({lo:.3f}-{hi:.3f})"
    return f"{mid:.3f} ({lo:.3f}-{hi:.3f})"


def _table(times: dict, label: str, log) -> None:
    """One measure's table, and the baseline's own run-to-run spread (the machine's noise between repetitions)."""
    base = times["baseline"]
    spread = (max(base) - min(base)) / statistics.median(base)
    log(f"{label}\n{'variant':28} {'median s':>9} {'min-max s':>13}  ratio to baseline, per repetition: median "
        f"(min-max)")
    for name, values in times.items():
        ratios = [v / b for v, b in zip(values, base, strict=False)]
        cell = "1" if name == "baseline" else ratio_cell(ratios)
        log(f"{name:28} {statistics.median(values):9.2f} {min(values):6.2f}-{max(values):<6.2f}  {cell}")
    log(f"baseline run-to-run spread {spread:.0%}")


def report(result: dict, log=print) -> None:
    cores = os.cpu_count() or 1
    log(f"\n## CPU wall-clock of whole {result['steps']}-step videos ({platform.processor() or platform.machine()}, "
        f"{cores} cores, {result['threads']} torch thread{'s' if result['threads'] > 1 else ''})")
    cut, steps = result["cut_step"], result["steps"]
    log(f"SVD UNet narrowed to {result['channels']} channels, heads of {min(result['channels'], 64)} "
        f"({result['params'] / 1e6:.0f}M parameters, random weights), {result['frames']} frames at "
        f"{result['width']}x{result['height']}, Euler + CFG {CFG}, cut at step {cut} = {cut - 1} guided + "
        f"{steps - cut + 1} conditional-only steps; {result['repeats']} repetitions, variants interleaved.")
    load = result["load"]
    log(f"1-minute load average {min(load):.1f}-{max(load):.1f} on {cores} cores"
        + (" (the machine is busy: expect noise)" if max(load) > cores else ""))
    _table(result["times"], "wall-clock seconds per video:", log)
    _table(result["cpu_times"], "process CPU seconds per video (one thread: the time this process ran, without the "
           "time other jobs held the cores; their use of caches and memory still shows):", log)
    log(f"exact's video vs the baseline's (same seed): max relative difference {result['exact_vs_baseline']:.1e}")
    log(f"A ratio is printed only when its per-repetition values span less than {SPREAD_LIMIT:.2f} and exclude 1; "
        f"the MAC tables above are the machine-independent measure.")
