"""The sampling-run layer (nodes/run.py) on ComfyUI's own SVD model, samplers and executor: the pack's speed and
anchoring features stacked (VCUT exact -> Cut Step Scheduler -> UNet Feature Cache -> STIV Frame Replace) under core
context windows and Heun, one report per run, typed settings on the clone, a feature attached twice, one executor
across edited prompts."""
import dataclasses
import logging

import harness
import pytest
import torch
from harness import node
from test_cut_with_core_nodes import node_defaults, with_context_windows

FRAMES = 9  # more than one core context window (context_length 4)
STEPS = 3  # Heun: 5 model evaluations (the last step has no correction)


@pytest.fixture()
def nodes(comfy_nodes):
    if "ContextWindowsManual" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no core context windows")
    return comfy_nodes


def stack(nodes, model, cut_step=2, interval=2):
    """VCUT exact -> Cut Step Scheduler -> UNet Feature Cache on `model`."""
    model = node(nodes, "VCUTPatchModel").execute(model, "exact").result[0]
    model = node(nodes, "VCUTCutStepScheduler").execute(model, cut_step, 0.0, "reuse_delta", 0.0).result[0]
    return node(nodes, "VCUTFeatureCache").execute(model, interval, 0, "uniform", 0.0, 1.0).result[0]


def test_the_whole_stack_under_context_windows_and_heun(nodes, caplog):
    """Every feature acts in every window at the step the one tracker gives: guided rows before the cut, the
    positive rows after it (per window, per Heun evaluation), the anchored frame exactly the anchor, and one report
    line naming all four features."""
    pos, neg, latent = harness.svd_conds(frames=FRAMES)
    image = pos[0][1]["concat_latent_image"]
    windowed = with_context_windows(nodes, stack(nodes, harness.tiny_svd()))
    patched, anchored = node(nodes, "VCUTFrameReplace").execute(windowed, latent, "0", 1.0, True,
                                                                positive=pos).result
    recorded, calls = harness.record_unet_calls(patched)
    with caplog.at_level(logging.INFO, logger="vcut"):
        out = harness.sample(recorded, pos, neg, anchored, steps=STEPS, sampler="heun")
    assert torch.isfinite(out).all()
    assert torch.equal(out[0], image[0]) and not torch.equal(out[1], image[0])
    evaluations = [2, 2, 1, 1, 1]  # step 1 (2 evaluations) guided, the cut at step 2
    windows = len(calls) // len(evaluations)
    assert windows >= 2 and len(calls) == windows * len(evaluations)
    branches = [rows // 4 for rows, _ in calls]  # every window holds 4 frames
    assert branches == [b for b in evaluations for _ in range(windows)]
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("VCUT run: ")]
    assert len(reports) == 1
    for name in ("VCUT Patch Model (exact)", "Cut Step Scheduler: ", "UNet Feature Cache: ", "STIV Frame Replace: "):
        assert name in reports[0], (name, reports[0])
    assert f"{2 * windows} guided and {3 * windows} conditional-only" in reports[0]
    assert "frames 0 pinned" in reports[0] and "GMACs" in reports[0]
    assert "stepped aside" not in caplog.text and "runs the whole UNet" not in caplog.text


def test_settings_are_typed_and_readable_on_the_clone(comfy_nodes):
    run = harness.pack_module().nodes.run
    patch_layer = harness.pack_module().nodes.patch_layer
    model = harness.tiny_svd()
    cut = node(comfy_nodes, "VCUTCutStepScheduler").execute(model, 5, 0.0, "drop", 0.0).result[0]
    cached = node(comfy_nodes, "VCUTFeatureCache").execute(cut, 3, 1, "non-uniform", 0.1, 0.9).result[0]
    config = run.feature_config(cached, patch_layer.FEATURE_CACHE)
    assert (config.interval, config.branch, config.schedule, config.start_percent, config.end_percent) == \
        (3, 1, "non-uniform", 0.1, 0.9)
    assert run.feature_config(cached, patch_layer.CUT_STEP).cut_step == 5
    assert run.feature_config(model, patch_layer.FEATURE_CACHE) is None  # the input model is unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.interval = 2


def test_a_feature_attached_twice_keeps_the_later_settings(comfy_nodes):
    """Two caches, or two cuts, on one model: the later node replaces the earlier (the same video as the later
    alone); two STIV Frame Replace nodes stack (both frames anchored)."""
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=3)
    cache, cut = node(comfy_nodes, "VCUTFeatureCache"), node(comfy_nodes, "VCUTCutStepScheduler")

    def cached(m, interval):
        return cache.execute(m, interval, 0, "uniform", 0.0, 1.0).result[0]

    def cutted(m, cut_step):
        return cut.execute(m, cut_step, 0.0, "drop", 0.0).result[0]
    assert torch.equal(harness.sample(cached(cached(model, 2), 3), *conds, steps=6),
                       harness.sample(cached(model, 3), *conds, steps=6))
    assert torch.equal(harness.sample(cutted(cutted(model, 2), 4), *conds, steps=5),
                       harness.sample(cutted(model, 4), *conds, steps=5))
    pos, neg, latent = conds
    replace = node(comfy_nodes, "VCUTFrameReplace")
    first, lat = replace.execute(model, latent, "0", 1.0, False, positive=pos).result
    both, lat = replace.execute(first, lat, "2", 1.0, False, positive=pos).result
    out = harness.sample(both, pos, neg, lat, steps=4)
    image = pos[0][1]["concat_latent_image"][0]
    assert torch.equal(out[0], image) and torch.equal(out[2], image) and not torch.equal(out[1], image)


def anchored(nodes, kind, anchor_steps):
    """(model, positive, negative, latent) of an anchoring on the tiny SVD, as its node returns them."""
    model = harness.tiny_svd()
    pos, neg, latent = harness.svd_conds(frames=5)
    if kind == "STIV Frame Replace":
        patched, out = node(nodes, "VCUTFrameReplace").execute(model, latent, "0,3", anchor_steps, True,
                                                               positive=pos).result
        return patched, pos, neg, out
    return node(nodes, "VCUTLoopConditioning").execute(model, pos, neg, latent, "sdslc", "inverted noise", True,
                                                       True, anchor_steps, "still background").result


@pytest.mark.parametrize("kind", ["STIV Frame Replace", "Loop Conditioning"])
def test_an_anchoring_split_over_two_samplers_is_the_one_sampler_video(comfy_nodes, kind, caplog):
    """KSamplerAdvanced's split: steps 1..2 adding noise and returning it with leftover noise, then steps 3..4
    adding none, is the one-KSampler video: the first part leaves its anchored frames at anchor + sigma * noise
    (not the clean anchor), the second reads that noise off the latent it gets (it adds none of its own). With
    anchor_steps below 1 each part anchors that fraction of its own steps: a warning says so."""
    steps, split = 4, 2
    model, pos, neg, latent = anchored(comfy_nodes, kind, 1.0)
    one = harness.sample(model, pos, neg, latent, steps=steps)
    first = comfy_nodes.common_ksampler(model, 0, steps, 2.5, "euler", "karras", pos, neg, latent,
                                        start_step=0, last_step=split, force_full_denoise=False)[0]
    second = comfy_nodes.common_ksampler(model, 0, steps, 2.5, "euler", "karras", pos, neg, first,
                                         disable_noise=True, start_step=split, last_step=steps)[0]["samples"]
    assert harness.rel_err_l2(second, one) <= 1e-5
    assert not torch.equal(first["samples"][0], latent["samples"][0])  # leftover noise on the anchored frame
    assert "part of a schedule" not in caplog.text
    model, pos, neg, latent = anchored(comfy_nodes, kind, 0.5)
    with caplog.at_level(logging.WARNING, logger="vcut"):
        comfy_nodes.common_ksampler(model, 0, steps, 2.5, "euler", "karras", pos, neg, latent,
                                    start_step=0, last_step=split, force_full_denoise=False)
    assert f"{kind}: this sampler runs part of a schedule (it ends with leftover noise), and anchor_steps 0.5 " \
           "anchors 1 of this part's 2 steps" in caplog.text


def stack_prompt(defaults, cut_step, interval):
    return {
        "1": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}},
        "2": {"class_type": "VCUTPatchModel", "inputs": {"model": ["1", 0], "mode": "exact"}},
        "3": {"class_type": "VCUTCutStepScheduler", "inputs": {"model": ["2", 0], "cut_step": cut_step,
                                                            "cut_fraction": 0.0, "after_cut": "reuse_delta",
                                                            "auto_threshold": 0.0}},
        "4": {"class_type": "VCUTFeatureCache", "inputs": {"model": ["3", 0], "interval": interval, "branch": 0,
                                                           "schedule": "uniform", "start_percent": 0.0,
                                                           "end_percent": 1.0}},
        "5": {"class_type": "ContextWindowsManual", "inputs": {**defaults, "model": ["4", 0]}},
        "6": {"class_type": "VCUTFrameReplace", "inputs": {"model": ["5", 0], "latent": ["1", 3], "frames": "0",
                                                           "anchor_steps": 1.0, "jit_cfg": True,
                                                           "positive": ["1", 1]}},
        "7": {"class_type": "KSampler", "inputs": {
            "model": ["6", 0], "positive": ["1", 1], "negative": ["1", 2], "latent_image": ["6", 1], "seed": 0,
            "steps": STEPS, "cfg": 2.5, "sampler_name": "heun", "scheduler": "karras", "denoise": 1.0}},
        "8": {"class_type": "VCUTTestCapture", "inputs": {"value": ["7", 0], "key": "latent"}},
    }


def test_one_executor_across_edited_prompts_gives_each_prompt_its_own_run(nodes):
    """One PromptExecutor (a server) across prompts whose cut and cache settings change: a prompt run again gives
    the same video bit for bit (no run's state survives into the next), an edited one another video."""
    defaults = {**node_defaults(node(nodes, "ContextWindowsManual")), "context_length": 4, "context_overlap": 1,
                "dim": 0}
    defaults.pop("model", None)
    if "causal_window_fix" in defaults:
        defaults["causal_window_fix"] = False
    session = harness.Session()
    first = session.run(stack_prompt(defaults, 2, 2))["latent"]["samples"]
    edited = session.run(stack_prompt(defaults, 3, 3))["latent"]["samples"]
    again = session.run(stack_prompt(defaults, 2, 2))["latent"]["samples"]
    assert torch.equal(first, again) and not torch.equal(first, edited)
    assert torch.isfinite(edited).all()


def split_in_halves(model):
    """A clone whose every UNet call is split into two calls of half the rows by a unet function wrapper that does
    not tell ComfyUI's chunk lists (transformer_options' uuids / cond_or_uncond): a split the pack does not know."""
    split = model.clone()

    def wrapper(apply_model, args):
        x, c = args["input"], args["c"]
        half = x.shape[0] // 2

        def part(value, rows):
            return value[rows] if torch.is_tensor(value) and value.shape[:1] == x.shape[:1] else value
        outs = [apply_model(x[rows], args["timestep"][rows], **{k: part(v, rows) for k, v in c.items()})
                for rows in (slice(0, half), slice(half, None))]
        return torch.cat(outs)
    split.set_model_unet_function_wrapper(wrapper)
    return split


def test_a_split_the_layer_does_not_know_makes_the_cache_step_aside(comfy_nodes, caplog):
    """Calls whose rows the layer cannot tell apart keep and reuse nothing: every step of the cache runs fully (the
    video equals the uncached one under the same split), a warning names the split and the report counts it."""
    model = split_in_halves(harness.tiny_svd())
    conds = harness.svd_conds(frames=3)
    cached = node(comfy_nodes, "VCUTFeatureCache").execute(model, 3, 0, "uniform", 0.0, 1.0).result[0]
    with caplog.at_level(logging.INFO, logger="vcut"):
        out = harness.sample(cached, *conds, steps=4)
    assert torch.equal(out, harness.sample(model, *conds, steps=4))
    assert "UNet Feature Cache: batch chunks not told apart: stepped aside" in caplog.text
    report = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("VCUT run: "))
    assert "0 partial" in report and "stepped aside 8x" in report


GMACS = r"([0-9.e+-]+) GMACs vs ([0-9.e+-]+) unpatched = ([0-9.]+)x"


def test_the_report_compares_with_the_unpatched_run(comfy_nodes, caplog):
    """The report's reference is the unpatched run: a run whose features change nothing (a cut past the last step)
    reports ratio 1 and its MACs; VCUT exact on the same model reports those MACs as its reference (plus the
    cross-attention's attention products, which the counter does not see on the CPU's fused kernel) and spends
    fewer; adding the cut at step 2 of 3 guides 1 step: 4 of the 6 rows."""
    import re

    pos, neg, latent = harness.svd_conds(frames=3)
    cut = node(comfy_nodes, "VCUTCutStepScheduler")
    vcut = node(comfy_nodes, "VCUTPatchModel")
    base = harness.tiny_svd()
    models = {"plain": cut.execute(base, 100, 0.0, "drop", 0.0).result[0]}
    models["vcut"] = cut.execute(vcut.execute(base, "exact").result[0], 100, 0.0, "drop", 0.0).result[0]
    models["vcut+cut"] = cut.execute(vcut.execute(base, "exact").result[0], 2, 0.0, "drop", 0.0).result[0]
    figures = {}
    for name, model in models.items():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="vcut"):
            harness.sample(model, pos, neg, latent, steps=3)
        report = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("VCUT run: "))
        figures[name] = [float(v) for v in re.search(GMACS, report).groups()]
    plain, vcut_only, both = figures["plain"], figures["vcut"], figures["vcut+cut"]
    assert plain[0] == plain[1] and plain[2] == 1.0, plain
    assert vcut_only[1] == pytest.approx(plain[0], rel=0.01) and vcut_only[0] < vcut_only[1], (plain, vcut_only)
    assert both[1] == vcut_only[1] and both[0] == pytest.approx(vcut_only[0] * 4 / 6, rel=0.01), (vcut_only, both)
