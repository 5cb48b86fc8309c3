"""VCUT benchmark: the paper's efficiency tables (Table II, III) recomputed, and wall-clock ratios in one run.

Part 1 (no weights, seconds): MACs and parameters of the full-size SVD (14 frames) and SVD-XT (25 frames) UNets at
576x1024, diffusers' UNetSpatioTemporalConditionModel on the meta device, baseline vs VCUT exact vs VCUT paper,
per step (batch 2, as CFG runs) and per 25-step video at cut steps 17 and 20, beside the paper's numbers.
Part 2 (random weights, CPU, a few minutes): wall-clock of whole 25-step videos at a reduced size (bench/
vcut_wallclock.py): baseline, VCUT exact and VCUT paper, each without and with the cut at step 17, interleaved and
repeated; the ratio to the baseline is printed with its spread, or not at all when the spread is too large.

    python bench/vcut_bench.py                  # both parts
    python bench/vcut_bench.py --no-wallclock   # MAC / parameter tables only
"""
from __future__ import annotations

if __package__ in (None, ""):  # run as a script: import the pack as the package `vcut`
    from pack_import import register_pack
    register_pack()
    __package__ = "vcut.bench"

import argparse
import copy
import time

import torch

from ..cache import deepcache
from ..cut.accounting import MacCount, count_macs, parameter_count, vector_macs, video_macs
from . import diffusers_reference

T = 1e12
STEPS = 25
CUT_STEPS = (17, 20)
# VCUT paper, Tables II and III (thop convention), T MACs / billions of parameters.
PAPER = {
    "SVD": {"step": {"baseline": 36.11, "paper": 35.11}, "params": {"baseline": 1.521, "paper": 1.474},
            "video": {"baseline": 903, 17: 719, 20: 772}},
    "SVD-XT": {"step": {"baseline": 64.41, "paper": 62.86}, "params": {"baseline": 1.524, "paper": 1.474},
               "video": {"baseline": 1610, 17: 1288, 20: 1382}},
}
MODELS = {"SVD": 14, "SVD-XT": 25}
VARIANTS = ("baseline", "exact", "paper")


def build_unet(device="meta", config=None):
    """diffusers' SVD UNet (its default config is SVD's), on `device` with uninitialised weights."""
    from diffusers import UNetSpatioTemporalConditionModel
    with torch.device("meta"):
        unet = UNetSpatioTemporalConditionModel(**(config or {}))
    # AlphaBlender creates its mix factor with the legacy torch.Tensor(), which ignores the default device.
    return unet.to("meta").to_empty(device=device) if device != "meta" else unet.to("meta")


def unet_inputs(batch, frames, height, width, device="meta", dtype=torch.float32, seed=0):
    generator = None if device == "meta" else torch.Generator(device).manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, device=device, dtype=dtype)
    contexts = randn(batch, 1, 1024)
    return (randn(batch, frames, 8, height // 8, width // 8), torch.full((batch,), 0.5, device=device),
            contexts, randn(batch, 3))


def variants_of(unet):
    """{variant: (unet, plan or None)} with VCUT applied to copies."""
    out = {"baseline": (unet, None)}
    for mode in ("exact", "paper"):
        patched = copy.deepcopy(unet)
        out[mode] = (patched, diffusers_reference.patch_unet_(patched, mode))
    return out


def mac_tables():
    rows = []
    unet = build_unet()
    models = variants_of(unet)
    for name, frames in MODELS.items():
        for variant, (model, _plan) in models.items():
            def step(batch):
                with torch.device("meta"):
                    return count_macs(lambda: model(*unet_inputs(batch, frames, 576, 1024)))
            second_context = vector_macs(model, 1)  # a CFG step has two distinct contexts, a meta count holds one
            guided, unguided = step(2) + MacCount(second_context, second_context), step(1)
            videos = {"baseline": video_macs(guided, unguided, STEPS, STEPS + 1)}
            for c in CUT_STEPS:
                videos[c] = video_macs(guided, unguided, STEPS, c)
            rows.append({"model": name, "variant": variant, "step": guided, "videos": videos,
                         "params": parameter_count(model)})
    return rows


def _fmt(value: float, reference: float | None) -> str:
    return f"{value:8.2f}" + (f" ({reference:g})" if reference is not None else "").ljust(9)


def print_mac_tables(rows):
    print("MACs in T and parameters in B. In brackets: the VCUT paper's number (thop convention, Tables II-III).")
    print("'video, no cut' = 25 guided steps; 'c=17' = steps 1-16 guided (batch 2), 17-25 conditional only (batch 1).")
    for convention in ("linear_conv", "all_matmuls"):
        label = ("paper's convention: linear + conv layers (thop), no attention matmuls" if convention == "linear_conv"
                 else "FlopCounterMode: all matmuls incl. attention")
        print(f"\n## {label}")
        print(f"{'model':7} {'variant':9} {'per step':>17} {'video, no cut':>17} {'video c=17':>17} "
              f"{'video c=20':>17} {'params (B)':>17}")
        for row in rows:
            paper = PAPER[row["model"]] if convention == "linear_conv" else None
            variant = row["variant"]

            def ref(table, key):
                return paper[table].get(key) if paper else None
            vcut_ref = "paper" if variant != "baseline" else "baseline"
            step_ref = ref("step", vcut_ref) if variant != "exact" else None
            cells = [_fmt(getattr(row["step"], convention) / T, step_ref),
                     _fmt(getattr(row["videos"]["baseline"], convention) / T,
                          ref("video", "baseline") if variant == "baseline" else None)]
            for c in CUT_STEPS:
                cells.append(_fmt(getattr(row["videos"][c], convention) / T,
                                  ref("video", c) if variant == "paper" else None))
            cells.append(f"{row['params'] / 1e9:8.3f}" + (f" ({ref('params', vcut_ref):g})" if paper and variant != "exact" else ""))
            print(f"{row['model']:7} {variant:9} " + " ".join(cells))


CACHE_INTERVALS = (2, 3, 5)
CACHE_BRANCHES = (0, 1)
CACHE_GOAL = 0.40  # the cache's target: VCUT exact + cut 17 + cache N=3 branch 0 at most 0.40x the baseline (SVD-XT)


def cache_mac_rows():
    """UNet Feature Cache (DeepCache) per 25-step video: alone on the baseline UNet (no cut), and with VCUT exact +
    the cut at step 17; a partial step counted on the meta device with diffusers_reference.step."""
    base = build_unet()
    exact = copy.deepcopy(base)
    diffusers_reference.patch_unet_(exact, "exact")
    rows = []
    for name, frames in MODELS.items():
        costs = {}
        for variant, model in (("baseline", base), ("exact", exact)):
            for branch in (None, *CACHE_BRANCHES):
                def step(batch):
                    with torch.device("meta"):
                        args = unet_inputs(batch, frames, 576, 1024)
                        if branch is None:
                            return count_macs(lambda: model(*args))
                        kept = diffusers_reference.step(model, *args, branch)[1]
                        return count_macs(lambda: diffusers_reference.step(model, *args, branch, cached=kept))
                modules = [model] if branch is None else diffusers_reference.shallow_modules(model, branch)
                second = sum(vector_macs(m, 1) for m in modules)  # a CFG step's second context (exact only)
                costs[variant, branch] = (step(2) + MacCount(second, second), step(1))
        baseline = video_macs(*costs["baseline", None], STEPS, STEPS + 1)
        for branch in CACHE_BRANCHES:
            for interval in CACHE_INTERVALS:
                for schedule in deepcache.SCHEDULES:
                    full = deepcache.full_steps(STEPS, interval, schedule)
                    alone = deepcache.cached_video_macs(*costs["baseline", None], *costs["baseline", branch],
                                                        STEPS, STEPS + 1, full)
                    stacked = deepcache.cached_video_macs(*costs["exact", None], *costs["exact", branch], STEPS,
                                                          CUT_STEPS[0], full)
                    rows.append({"model": name, "interval": interval, "branch": branch, "schedule": schedule,
                                 "alone": alone, "stacked": stacked, "baseline": baseline,
                                 "partial_share": costs["baseline", branch][1].all_matmuls
                                 / costs["baseline", None][1].all_matmuls})
    return rows


def print_cache_rows(rows):
    print("\n## UNet Feature Cache (DeepCache), 25-step video, T MACs (ratio to the baseline video, no cut)")
    print("'alone' = baseline UNet + cache, every step guided; 'exact+c17' = VCUT exact + cut at 17 + cache. "
          "'partial' = a partial step's MACs / a full step's (all matmuls).")
    print(f"{'model':7} {'N':>2} {'br':>2} {'schedule':11} {'partial':>7} {'alone lin+conv':>20} "
          f"{'alone all':>20} {'exact+c17 lin+conv':>20} {'exact+c17 all':>20}")
    for row in rows:
        cells = []
        for key in ("alone", "stacked"):
            for convention in ("linear_conv", "all_matmuls"):
                value, ref = getattr(row[key], convention), getattr(row["baseline"], convention)
                cells.append(f"{value / T:10.1f} ({value / ref:.3f}x)".rjust(20))
        print(f"{row['model']:7} {row['interval']:2d} {row['branch']:2d} {row['schedule']:11} "
              f"{row['partial_share']:7.3f} " + " ".join(cells))
    goal = next(r for r in rows if (r["model"], r["interval"], r["branch"], r["schedule"]) ==
                ("SVD-XT", 3, 0, "uniform"))
    ratio = goal["stacked"].all_matmuls / goal["baseline"].all_matmuls
    ratio_lc = goal["stacked"].linear_conv / goal["baseline"].linear_conv
    print(f"MAC target: SVD-XT, VCUT exact + cut 17 + cache N=3 branch 0 uniform: {ratio:.3f}x (all matmuls), "
          f"{ratio_lc:.3f}x (linear+conv) of the baseline's MACs; target <= {CACHE_GOAL:.2f}x: "
          f"{'met' if max(ratio, ratio_lc) <= CACHE_GOAL else 'not met'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-wallclock", action="store_true", help="only the MAC / parameter tables")
    parser.add_argument("--frames", type=int, default=4, help="wall-clock part: video frames")
    parser.add_argument("--height", type=int, default=128, help="wall-clock part: pixel height (latent = / 8)")
    parser.add_argument("--width", type=int, default=128, help="wall-clock part: pixel width (latent = / 8)")
    parser.add_argument("--channels", type=int, default=32,
                        help="wall-clock part: UNet width (SVD: 320; 32 or a multiple of 64)")
    parser.add_argument("--repeats", type=int, default=3, help="wall-clock part: repetitions of all variants")
    parser.add_argument("--threads", type=int, default=1, help="wall-clock part: torch CPU threads (1: steady on a "
                        "shared machine, see vcut_wallclock.measure)")
    args = parser.parse_args(argv)
    print(f"vcut benchmark, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    print_mac_tables(mac_tables())
    print_cache_rows(cache_mac_rows())
    if not args.no_wallclock:
        from .vcut_wallclock import measure, report
        print(f"\nwall-clock: {args.repeats} repetitions x 8 whole videos ...", flush=True)
        report(measure(args.frames, args.height, args.width, args.channels, STEPS, CUT_STEPS[0], args.repeats,
                       args.threads, log=lambda line: print(line, flush=True)))


if __name__ == "__main__":
    main()
