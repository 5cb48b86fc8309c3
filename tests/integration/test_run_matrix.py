"""The combination matrix of the sampling-run layer (nodes/run.py): each pack feature that acts while ComfyUI samples
(VCUT exact, Cut Step Scheduler, UNet Feature Cache, the anchorings of STIV Frame Replace / Loop Conditioning / Video
Extend, and their stack) x each ComfyUI run feature that splits or repeats model calls (core context windows, the
MultiGPU CFG split, EasyCache, LazyCache, DualCFGGuider, Heun, hook keyframes) and one server across edited prompts.

Every cell asserts what is right for it, against a reference computed another way: an exact feature equals the
unpatched run; the cut equals guided-then-unguided sampling of the same schedule in two segments; the cache keeps a
feature per call key and switches with the weights; an anchoring pins exactly the anchored latent frames in every
UNet call (every window, evaluation and branch) to the anchor at the call's noise level. ComfyUI's own nodes,
samplers and executor; a run feature this release lacks is skipped by what exists in it. docs/testing.md has the
table."""
from __future__ import annotations

import logging

import harness
import pytest
import torch
from harness import node
from harness import rel_err_l2 as rel_err
from test_cut_with_core_nodes import node_defaults, with_context_windows

FRAMES = 9  # more frames than one core context window (context_length 4): windows split every model call
STEPS = 4
CUT_STEP = 3  # guided steps 1-2, positive only from step 3
INTERVAL = 2  # the cache: full steps 1 and 3, partial 2 and 4
CFG = 2.5
SEED = 0


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a CPU shared with other processes, torch's two threads wait on each other (10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def result(out):
    return out.result if hasattr(out, "result") else out


# ---- the ComfyUI run features: how each wraps the model, the conditioning and the sampler ----

class RunFeature:
    """A ComfyUI run feature: `model` wraps the sampled model, `conds` the conditioning, `guider` picks the guider,
    `sampler` the sampler. `needs` is the core node it uses (skipped where this release lacks it)."""
    name = "plain"
    needs: str | None = None
    sampler = "euler"
    dual = False  # DualCFGGuider: conds are [negative, middle, positive] in calc_cond_batch

    def model(self, nodes, model):
        return model

    def conds(self, nodes, positive, negative):
        return positive, negative


class Windows(RunFeature):
    name, needs = "context windows", "ContextWindowsManual"

    def model(self, nodes, model):
        return with_context_windows(nodes, model)


class MultiGPU(RunFeature):
    name, needs = "MultiGPU CFG split", "MultiGPU_WorkUnits"

    def model(self, nodes, model):
        settings = {**node_defaults(node(nodes, "MultiGPU_WorkUnits")), "max_gpus": 2}
        settings.pop("model", None)
        return result(node(nodes, "MultiGPU_WorkUnits").execute(model, **settings))[0]


class EasyCache(RunFeature):
    name, needs = "EasyCache", "EasyCache"

    def model(self, nodes, model):
        # a threshold low enough that some steps after the cut still run on the tiny model
        return result(node(nodes, self.needs).execute(model, 0.05, 0.0, 1.0, False))[0]


class LazyCache(EasyCache):
    name, needs = "LazyCache", "LazyCache"


class DualCFG(RunFeature):
    name, needs, dual = "DualCFGGuider", "DualCFGGuider", True


class Heun(RunFeature):
    name, sampler = "Heun", "heun"


class HookKeyframes(RunFeature):
    """Core hook keyframes on the conditioning: a model-as-LoRA weight hook (another tiny SVD's weights) at strength
    1 for step 1 and 0.25 from step 2 on (Create Hook Keyframe x2 -> Set Hook Keyframes -> Conditioning Set
    Properties), one hook on the positive and another on the negative, so ComfyUI runs them in calls of their own
    and switches their weights mid-run."""
    name, needs = "hook keyframes", "CreateHookKeyframe"

    def conds(self, nodes, positive, negative):
        import comfy.hooks
        switch = switch_percent(harness.tiny_svd())
        kf = node(nodes, "CreateHookKeyframe")().create_hook_keyframe(1.0, 0.0)[0]
        kf = node(nodes, "CreateHookKeyframe")().create_hook_keyframe(0.25, switch, prev_hook_kf=kf)[0]
        weights = comfy.hooks.get_patch_weights_from_model(harness.tiny_svd(seed=1))
        out = []
        for cond in (positive, negative):
            hooks = comfy.hooks.create_hook_model_as_lora(weights, None, 1.0, 0.0)
            hooks = node(nodes, "SetHookKeyframes")().set_hook_keyframes(hooks, hook_kf=kf)[0]
            out.append(node(nodes, "ConditioningSetProperties")().set_properties(cond, 1.0, "default",
                                                                                 hooks=hooks)[0])
        return tuple(out)


def switch_percent(model):
    """A start_percent whose sigma lies between the schedule's first and second sigma: the keyframe switches at
    step 2."""
    import comfy.samplers
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, "karras", STEPS)
    middle = float(sigmas[0] + sigmas[1]) / 2
    return next(p / 100 for p in range(1, 100) if float(sampling.percent_to_sigma(p / 100)) < middle)


RUN_FEATURES = {f.name: f for f in (Windows(), MultiGPU(), EasyCache(), LazyCache(), DualCFG(), Heun(),
                                     HookKeyframes())}


# ---- sampling: ComfyUI's own guiders and samplers, a whole schedule or a segment of it ----

def sample(run_feature, model, positive, negative, latent, cfg=CFG, start=0, last=STEPS, add_noise=True):
    """Steps start+1..last of the karras schedule of STEPS steps with ComfyUI's CFGGuider (or Guider_DualCFG, whose
    middle conditioning is the positive with half its image embedding), as SamplerCustomAdvanced runs them."""
    import comfy.sample
    import comfy.samplers
    if run_feature.dual:
        from comfy_extras.nodes_custom_sampler import Guider_DualCFG
        middle = [[positive[0][0] * 0.5, dict(positive[0][1])]]
        guider = Guider_DualCFG(model)
        guider.set_conds(positive, middle, negative)
        guider.set_cfg(cfg, cfg)
    else:
        guider = comfy.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "karras", STEPS)
    sigmas = sigmas[start:last + 1]
    samples = latent["samples"]
    noise = comfy.sample.prepare_noise(samples, SEED) if add_noise else torch.zeros_like(samples)
    sampler = comfy.samplers.sampler_object(run_feature.sampler)
    return guider.sample(noise, samples, sampler, sigmas, seed=SEED, disable_pbar=True).float()


def negative_index(run_feature):
    """Index of the negative conditioning in calc_cond_batch's list (cond_or_uncond): CFGGuider [positive,
    negative], Guider_DualCFG [negative, middle, positive]."""
    return 0 if run_feature.dual else 1


# ---- the pack's features as a user chains them ----

def vcut_exact(nodes, model, pos, neg, latent):
    return node(nodes, "VCUTPatchModel").execute(model, "exact").result[0], pos, neg, latent


def cut(nodes, model, pos, neg, latent, cut_step=CUT_STEP):
    return node(nodes, "VCUTCutStepScheduler").execute(model, cut_step, 0.0, "drop", 0.0).result[0], pos, neg, latent


def cache(nodes, model, pos, neg, latent, interval=INTERVAL):
    return node(nodes, "VCUTFeatureCache").execute(model, interval, 0, "uniform", 0.0, 1.0).result[0], pos, neg, latent


def frame_replace(nodes, model, pos, neg, latent):
    patched, anchored = node(nodes, "VCUTFrameReplace").execute(model, latent, "0,5", 1.0, True, positive=pos).result
    return patched, pos, neg, anchored


def loop(nodes, model, pos, neg, latent):
    out = node(nodes, "VCUTLoopConditioning").execute(model, pos, neg, latent, "sdslc", "inverted noise", True, True,
                                                      1.0, "still background", motion_mask=None).result
    return out


def extend(nodes, model, pos, neg, latent):
    previous = {"samples": torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(7))}
    out = node(nodes, "VCUTVideoExtend").execute(model, previous, pos, neg, 2, FRAMES, 1.0, True, True).result
    return out[:4]


def stack(nodes, model, pos, neg, latent):
    for feature in (vcut_exact, cut, cache, frame_replace):
        model, pos, neg, latent = feature(nodes, model, pos, neg, latent)
    return model, pos, neg, latent


ANCHOR_KEYS = ("vcut_frame_replace", "vcut_loop_anchor", "vcut_video_extend")


def anchor_configs(model):
    run = harness.pack_module().nodes.run
    return [c for key in ANCHOR_KEYS for c in (run.feature_config(model, key) or ())]


# ---- what the UNet saw ----

def record_calls(model):
    """A clone whose every UNet call is recorded by a DIFFUSION_MODEL wrapper (inside the pack's APPLY_MODEL wrappers;
    attached before the pack's features, so outside the feature cache's, which runs a partial step itself):
    sigma, cond_or_uncond, context window, the input's latent channels, its concat channels and whether the deep
    blocks (the middle block) ran in it."""
    from comfy.patcher_extension import WrappersMP
    calls, deep = [], []

    def wrapper(executor, *args, **kwargs):
        x = args[0]
        options = args[5] if len(args) > 5 else kwargs["transformer_options"]
        window = options.get("context_window")
        ran = len(deep)
        out = executor(*args, **kwargs)
        calls.append({"sigma": float(options["sigmas"].max()), "branches": list(options["cond_or_uncond"]),
                      "window": None if window is None else list(window.index_list),
                      "x": x[:, :4].detach().clone(), "concat": x[:, 4:].detach().clone(), "deep": len(deep) > ran})
        return out
    recorded = model.clone()
    recorded.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "test_run_matrix", wrapper)
    # forward_timestep_embed calls a block's layers, not the block: the middle block's first layer
    recorded.model.diffusion_model.middle_block[0].register_forward_pre_hook(lambda m, a: deep.append(1))
    return recorded, calls


def schedule():
    import comfy.samplers
    sampling = harness.tiny_svd().get_model_object("model_sampling")
    return [float(s) for s in comfy.samplers.calculate_sigmas(sampling, "karras", STEPS)]


def call_steps(run_feature, calls):
    """The step (1-based) of every recorded UNet call, from its sigma: Euler evaluates step i at sigma i-1; Heun
    evaluates step i at sigma i-1 and again at sigma i (its correction, none on the last step), one call each."""
    sigmas = schedule()
    if run_feature.sampler == "heun":
        evaluations = [(step, sigmas[step - 1 + end]) for step in range(1, STEPS + 1) for end in (0, 1)
                       if not (end and step == STEPS)]
        assert [round(c["sigma"], 3) for c in calls] == [round(s, 3) for _, s in evaluations]
        return [step for step, _ in evaluations]
    return [next(i for i, s in enumerate(sigmas) if abs(s - call["sigma"]) <= 1e-4 * s) + 1 for call in calls]


def check_pins(model, calls, run_feature, latent, positive):
    """Every recorded UNet call: an anchored frame of the call's window is exactly the anchor at the call's noise
    level (the model's input scaling of anchor + sigma * noise, the sampler's own noise), in every branch but a
    JIT-CFG negative (whose anchored frames follow the sampler's, which the anchored output keeps on the anchor's
    path); after the first step no free frame is pinned to any anchor; every branch but the negative keeps the image it is
    conditioned on (a non-zero concat)."""
    configs = anchor_configs(model)
    assert configs and calls
    sampling = model.get_model_object("model_sampling")
    latent_format = model.model.latent_format
    import comfy.sample
    noise = comfy.sample.prepare_noise(latent["samples"], SEED).float()
    neg, first = negative_index(run_feature), max(c["sigma"] for c in calls)
    image = positive[0][1]["concat_latent_image"].expand(FRAMES, -1, -1, -1)  # the positive's image per frame
    pinned = 0
    for call in calls:
        sigma = torch.tensor([call["sigma"]])
        frames = call["window"] or list(range(FRAMES))
        rows = len(frames)
        assert call["x"].shape[0] == rows * len(call["branches"])
        for b, branch in enumerate(call["branches"]):
            x = call["x"][b * rows:(b + 1) * rows]
            for config in configs:
                anchor = latent_format.process_in(config.anchor.float())
                anchored = [f for f in range(FRAMES) if float(config.keep[f].max()) > 0]

                def at_level(a, f):
                    return sampling.calculate_input(sigma, (a + sigma * noise[f])[None])[0]
                for j, f in enumerate(frames):
                    where = f"sigma {call['sigma']:.4g}, window {call['window']}, branch {branch}, frame {f}"
                    if f in anchored and (branch != neg or not config.jit_cfg):
                        assert torch.allclose(x[j], at_level(anchor[f], f), rtol=1e-5, atol=1e-6), where
                        pinned += 1
                    elif f not in anchored and call["sigma"] < first:  # (the init latent may hold the anchor)
                        for g in anchored:
                            assert not torch.allclose(x[j], at_level(anchor[g], f), rtol=1e-5, atol=1e-6), where
            if branch != neg and image[frames].abs().amax() > 0:
                assert call["concat"][b * rows:(b + 1) * rows].abs().amax() > 0, ("image zeroed", branch)
    assert pinned > 0


def check_anchored_frames(model, out):
    for config in anchor_configs(model):
        for f in range(FRAMES):
            if float(config.keep[f].min()) > 0:
                assert torch.equal(out[f], config.anchor[f].to(out.dtype)), f


# ---- the cells ----

FEATURES = {"VCUT exact": vcut_exact, "Cut Step Scheduler": cut, "UNet Feature Cache": cache,
            "STIV Frame Replace": frame_replace, "Loop Conditioning": loop, "Video Extend": extend,
            "stack": stack}


@pytest.fixture()
def run_feature(request, comfy_nodes):
    feature = RUN_FEATURES[request.param]
    if feature.needs and feature.needs not in comfy_nodes.NODE_CLASS_MAPPINGS:
        pytest.skip(f"this ComfyUI has no {feature.needs} node ({feature.name})")
    return feature


def setting(nodes, run_feature, feature):
    """(patched model with the run feature, its recorded calls, the plain model with it, positive, negative,
    latent)."""
    base = harness.tiny_svd()
    pos, neg, latent = harness.svd_conds(frames=FRAMES)
    pos, neg = run_feature.conds(nodes, pos, neg)
    recorded, calls = record_calls(base)
    patched, pos, neg, latent = FEATURES[feature](nodes, recorded, pos, neg, latent)
    return run_feature.model(nodes, patched), calls, run_feature.model(nodes, base), pos, neg, latent


@pytest.mark.parametrize("run_feature", list(RUN_FEATURES), indirect=True)
@pytest.mark.parametrize("feature", list(FEATURES))
def test_cell(comfy_nodes, feature, run_feature, caplog):
    nodes = comfy_nodes
    patched, calls, plain, pos, neg, latent = setting(nodes, run_feature, feature)
    with caplog.at_level(logging.INFO, logger="vcut"):
        out = sample(run_feature, patched, pos, neg, latent)
    assert torch.isfinite(out).all()
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("VCUT run: ")]
    assert len(reports) == 1, reports
    assert "stepped aside" not in reports[0]
    switched = "runs the whole UNet: a hook keyframe changed the weights since the kept feature"
    if isinstance(run_feature, HookKeyframes) and feature in ("UNet Feature Cache", "stack"):
        assert switched in caplog.text
    else:
        assert "runs the whole UNet" not in caplog.text
    CHECKS[feature](nodes, run_feature, out, patched, plain, pos, neg, latent, calls, reports[0])


def check_exact(nodes, run_feature, out, patched, plain, pos, neg, latent, calls, report):
    """An exact feature: the unpatched run's video within float tolerance."""
    assert rel_err(out, sample(run_feature, plain, pos, neg, latent)) <= 1e-5
    assert "stepped aside" not in report


def check_cut(nodes, run_feature, out, patched, plain, pos, neg, latent, calls, report):
    """The cut: guided steps 1..c-1, then the positive alone, equal to sampling the same schedule in two segments,
    guided then cfg 1 (the calls ComfyUI makes for cfg 1 skip the negative); every UNet call before the cut step
    runs every conditioning, every call from it on the positive alone (Heun's step-end evaluations belong to their
    step; EasyCache / LazyCache skips do not move the cut)."""
    assert_cut_rows(run_feature, calls)
    if isinstance(run_feature, EasyCache):  # its skips depend on the outputs of the run so far: no two-segment twin
        return
    first = sample(run_feature, plain, pos, neg, latent, start=0, last=CUT_STEP - 1)
    second = sample(run_feature, plain, pos, neg, {"samples": first}, cfg=1.0, start=CUT_STEP - 1,
                    add_noise=False)
    assert rel_err(out, second) <= 1e-5


def assert_cut_rows(run_feature, calls, after_cut=True):
    """The UNet calls of a step before the cut run every conditioning, those of a step from the cut step on the
    positive alone (context windows and hook keyframes make several calls per step)."""
    every, positive = ({0, 1, 2}, 2) if run_feature.dual else ({0, 1}, 0)
    per_step = {}
    for call, step in zip(calls, call_steps(run_feature, calls), strict=True):
        per_step.setdefault(step, set()).update(call["branches"])
    assert min(per_step) < CUT_STEP and (CUT_STEP <= max(per_step) or not after_cut), sorted(per_step)
    for step, branches in per_step.items():
        assert branches == (every if step < CUT_STEP else {positive}), (step, branches)


def check_cache(nodes, run_feature, out, patched, plain, pos, neg, latent, calls, report):
    """The cache keeps a feature per call key: the deep blocks run in every call of a full step (1, 3) and in no
    call of a partial step (each found its own key's feature: no forced full step, no step aside); under context
    windows its difference to the uncached video is of the order of the difference without windows; the MultiGPU
    split (one device here) gives the cache's own video; a hook keyframe switch makes its step full (the video of a
    cache scheduled full there)."""
    steps = call_steps(run_feature, calls)
    full = set(harness.pack_module().cache.deepcache.full_steps(STEPS, INTERVAL))
    if isinstance(run_feature, HookKeyframes):
        full.add(2)  # the keyframe switches at step 2: the kept feature holds the other weights
    for call, step in zip(calls, steps, strict=True):
        if isinstance(run_feature, EasyCache):  # EasyCache may skip a full step's UNet call (its own reuse)
            assert not call["deep"] or step in full, step
        else:
            assert call["deep"] == (step in full), (step, call["window"], call["branches"])
    assert any(not c["deep"] for c in calls)
    if isinstance(run_feature, Windows):
        base = harness.tiny_svd()
        conds = harness.svd_conds(frames=FRAMES)
        alone = rel_err(sample(RunFeature(), cache(nodes, base, *conds)[0], *conds),
                        sample(RunFeature(), base, *conds))
        figure = rel_err(out, sample(run_feature, plain, pos, neg, latent))
        assert 0 < figure <= 2 * alone, (figure, alone)
    if isinstance(run_feature, MultiGPU):
        base = harness.tiny_svd()
        assert torch.equal(out, sample(RunFeature(), cache(nodes, base, pos, neg, latent)[0], pos, neg, latent))
    if isinstance(run_feature, HookKeyframes):  # the same video as a cache whose schedule has step 2 full
        base = harness.tiny_svd()
        steps_1_to_3 = node(nodes, "VCUTFeatureCache").execute(base, INTERVAL, 0, "uniform", 0.5, 1.0).result[0]
        assert harness.pack_module().cache.deepcache.full_steps(STEPS, INTERVAL, "uniform", 0.5) == [1, 2, 3]
        assert rel_err(out, sample(run_feature, steps_1_to_3, pos, neg, latent)) <= 1e-6


def check_anchoring(nodes, run_feature, out, patched, plain, pos, neg, latent, calls, report):
    """An anchoring pins exactly its frames in every UNet call and the finished anchored frames are the anchor."""
    check_pins(patched, calls, run_feature, latent, pos)
    check_anchored_frames(patched, out)
    assert "stepped aside" not in report


def check_stack(nodes, run_feature, out, patched, plain, pos, neg, latent, calls, report):
    """The stack: the cut's rows, the anchoring's pins (the cache's partial calls included) and one report naming
    all four features (LazyCache may skip every step after the cut on the tiny model)."""
    assert_cut_rows(run_feature, calls, after_cut=not isinstance(run_feature, LazyCache))
    check_anchoring(nodes, run_feature, out, patched, plain, pos, neg, latent, calls, report)
    for name in ("VCUT Patch Model (exact)", "Cut Step Scheduler: ", "UNet Feature Cache: ", "STIV Frame Replace: "):
        assert name in report, (name, report)


CHECKS = {"VCUT exact": check_exact, "Cut Step Scheduler": check_cut, "UNet Feature Cache": check_cache,
          "STIV Frame Replace": check_anchoring, "Loop Conditioning": check_anchoring,
          "Video Extend": check_anchoring, "stack": check_stack}


# ---- one server across edited prompts ----

def session_prompt(feature, variant):
    """An API prompt: the tiny SVD -> the feature (variant 0 or 1: two settings a user switches between; None: no
    feature) -> KSampler -> capture."""
    prompt = {"1": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}}}
    model, pos, neg, latent = ["1", 0], ["1", 1], ["1", 2], ["1", 3]
    chain = [] if variant is None else (["VCUT exact", "Cut Step Scheduler", "UNet Feature Cache",
                                         "STIV Frame Replace"] if feature == "stack" else [feature])
    for i, name in enumerate(chain):
        key = f"f{i}"
        if name == "VCUT exact":
            mode = "paper" if variant and feature == "VCUT exact" else "exact"  # the edit: exact -> paper mode
            prompt[key] = {"class_type": "VCUTPatchModel", "inputs": {"model": model, "mode": mode}}
        elif name == "Cut Step Scheduler":
            prompt[key] = {"class_type": "VCUTCutStepScheduler", "inputs": {
                "model": model, "cut_step": 2 + variant, "cut_fraction": 0.0, "after_cut": "reuse_delta",
                "auto_threshold": 0.0}}
        elif name == "UNet Feature Cache":
            prompt[key] = {"class_type": "VCUTFeatureCache", "inputs": {
                "model": model, "interval": 2 + variant, "branch": 0, "schedule": "uniform", "start_percent": 0.0,
                "end_percent": 1.0}}
        elif name == "STIV Frame Replace":
            prompt[key] = {"class_type": "VCUTFrameReplace", "inputs": {
                "model": model, "latent": latent, "frames": ["0", "0,5"][variant], "anchor_steps": 1.0,
                "jit_cfg": True, "positive": pos}}
            latent = [key, 1]
        elif name == "Loop Conditioning":
            prompt[key] = {"class_type": "VCUTLoopConditioning", "inputs": {
                "model": model, "positive": pos, "negative": neg, "latent": latent, "concat_layout": "sdslc",
                "init": "inverted noise", "close_loop": True, "anchor_first": bool(variant), "anchor_steps": 1.0,
                "mask_layout": "still background"}}
            pos, neg, latent = [key, 1], [key, 2], [key, 3]
        elif name == "Video Extend":
            prompt[key] = {"class_type": "VCUTVideoExtend", "inputs": {
                "model": model, "previous": latent, "positive": pos, "negative": neg, "overlap": 1 + variant,
                "frames": FRAMES, "anchor_steps": 1.0, "jit_cfg": True, "image_from_previous": True}}
            pos, neg, latent = [key, 1], [key, 2], [key, 3]
        model = [key, 0]
    prompt["k"] = harness.ksampler_node(model, pos, neg, latent, steps=STEPS)
    prompt["c"] = {"class_type": "VCUTTestCapture", "inputs": {"value": ["k", 0], "key": "latent"}}
    return prompt


@pytest.mark.parametrize("feature", list(FEATURES))
def test_one_server_across_edited_prompts(comfy_nodes, feature):
    """One PromptExecutor (a server: unchanged nodes are not run again, the last sampled model stays loaded with
    its patches) across the feature, its edited setting, no feature, and the feature again: every prompt gives
    what a fresh server gives it, bit for bit."""
    session = harness.Session()
    videos = [session.run(session_prompt(feature, variant))["latent"]["samples"] for variant in (0, 1, None, 0)]
    fresh = {variant: harness.fresh_session_run(session_prompt(feature, variant))["latent"]["samples"]
             for variant in (0, 1, None)}
    for video, variant in zip(videos, (0, 1, None, 0), strict=True):
        assert torch.equal(video, fresh[variant]), variant
    assert not torch.equal(fresh[0], fresh[1])  # the edit changes the video
    if feature != "VCUT exact":  # (VCUT exact is the unpatched video within float tolerance)
        assert not torch.equal(fresh[0], fresh[None])
