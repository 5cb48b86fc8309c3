"""UNet Feature Cache (DeepCache for SVD) on ComfyUI's own SVD model, KSampler and executor."""
import logging

import harness
import pytest
import torch
from harness import rel_err_l2 as rel_err

FRAMES = 3
DEEP = ("middle_block", "input_blocks.1", "input_blocks.2", "input_blocks.3", "output_blocks.0", "output_blocks.1",
        "output_blocks.2")  # the tiny UNet's blocks below branch 0 (4 input blocks, 4 output blocks)


@pytest.fixture()
def nodes(comfy_nodes):
    m = comfy_nodes.NODE_CLASS_MAPPINGS
    return m["VCUTFeatureCache"], m["VCUTPatchModel"], m["VCUTCutStepScheduler"], m["VCUTFrameReplace"]


def cache(node, model, interval=3, branch=0, schedule="uniform", start=0.0, end=1.0):
    return node.execute(model, interval, branch, schedule, start, end).result[0]


@pytest.fixture()
def deep_calls():
    """Forward hooks on the first layer of the tiny UNet's blocks (forward_timestep_embed calls a block's layers,
    not the block): rows of every call, per block name."""
    handles, calls = [], {}

    def install(model):
        unet = model.model.diffusion_model
        for name in (*DEEP, "input_blocks.0", "output_blocks.3"):
            calls[name] = []
            handles.append(unet.get_submodule(name + ".0").register_forward_hook(
                lambda m, a, o, name=name: calls[name].append(a[0].shape[0] // FRAMES)))
        return calls
    yield install
    for h in handles:
        h.remove()


def test_partial_step_with_the_same_steps_feature_equals_the_full_step_on_comfyuis_unet(comfy_nodes):
    compat = harness.pack_module().nodes.comfy_compat  # the partial step the cache runs (comfy_compat.unet_forward)
    model = harness.tiny_svd()
    unet = model.model.diffusion_model
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2 * FRAMES, 8, 8, 8, generator=g)
    t, context = torch.full((2 * FRAMES,), 0.3), torch.randn(2 * FRAMES, 1, 64, generator=g)
    y = torch.randn(2 * FRAMES, 768, generator=g)
    video = {"num_video_frames": FRAMES, "image_only_indicator": torch.zeros(2, FRAMES), "time_context": context}
    with torch.no_grad():
        for branch in range(len(unet.input_blocks)):
            first, kept = len(unet.output_blocks) - 1 - branch, {}

            def keep(h, hsp, options):
                if options["block"] == ("output", first):
                    kept["h"], kept["index"] = h, options["transformer_index"]
                return h, hsp
            full = unet(x, t, context, y, transformer_options={"patches": {"output_block_patch": [keep]}}, **video)
            shallow = compat.ShallowPath(branch, kept["h"], kept["index"])
            partial = compat.unet_forward(unet, x, t, context, y, {}, video, shallow)
            assert torch.equal(partial, full), branch


def test_interval_one_equals_the_unpatched_model(nodes):
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    assert torch.equal(harness.sample(cache(nodes[0], model, interval=1), *conds), harness.sample(model, *conds))


def test_interval_three_runs_the_deep_blocks_on_full_steps_only(nodes, deep_calls, caplog):
    model = cache(nodes[0], harness.tiny_svd(), interval=3)
    calls = deep_calls(model)
    recorded, unet_calls = harness.record_unet_calls(model)
    with caplog.at_level(logging.INFO, logger="vcut"):
        out = harness.sample(recorded, *harness.svd_conds(frames=FRAMES), steps=6)
    assert [r // FRAMES for r, _ in unet_calls] == [2] * 6
    assert calls["input_blocks.0"] == calls["output_blocks.3"] == [2] * 6
    assert all(calls[name] == [2, 2] for name in DEEP)  # steps 1 and 4 only
    assert torch.isfinite(out).all()
    line = next(r.getMessage() for r in caplog.records if "6 UNet calls" in r.getMessage())
    assert "2 full (12 rows), 4 partial (24 rows)" in line and "GMACs" in line and "x;" in line
    ratio = float(line.split(" = ")[1].split("x")[0])
    assert 0.2 < ratio < 0.9


def test_nonuniform_schedule_and_percent_range_pick_the_full_steps(nodes, deep_calls):
    fc = harness.pack_module().cache.deepcache
    for kwargs in ({"schedule": "non-uniform", "interval": 2}, {"start": 0.5, "interval": 3}):
        model = cache(nodes[0], harness.tiny_svd(), **kwargs)
        calls = deep_calls(model)
        harness.sample(model, *harness.svd_conds(frames=FRAMES), steps=8)
        full = fc.full_steps(8, kwargs["interval"], kwargs.get("schedule", "uniform"), kwargs.get("start", 0.0))
        assert len(calls["middle_block"]) == len(full) < 8


def test_output_difference_to_the_uncached_video(nodes, capsys):
    """The cached video is an approximation of the uncached one: not equal, but closer to it than the uncached video
    sampled with as many steps as the cache runs fully (the saving DeepCache is for: the same cost, less error);
    and a deeper branch (more blocks run) is closer than the shallowest."""
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    plain = harness.sample(model, *conds, steps=9)
    figures, fewer = {}, {}
    for interval, branch, schedule in ((2, 0, "uniform"), (3, 0, "uniform"), (3, 1, "uniform"),
                                       (3, 0, "non-uniform")):
        out = harness.sample(cache(nodes[0], model, interval, branch, schedule), *conds, steps=9)
        figures[(interval, branch, schedule)] = rel_err(out, plain)
        full = len(harness.pack_module().cache.deepcache.full_steps(9, interval, schedule))
        if full not in fewer:
            fewer[full] = rel_err(harness.sample(model, *conds, steps=full), plain)
        assert 0 < figures[(interval, branch, schedule)] < fewer[full], (interval, branch, schedule)
    with capsys.disabled():
        print("\nfeature cache, tiny SVD (random weights), 9 euler steps: relative L2 difference to the uncached "
              "latent: " + ", ".join(f"N={n} branch {b} {s}: {v:.3g}" for (n, b, s), v in figures.items()) +
              "; uncached with fewer steps: " + ", ".join(f"{k} steps: {v:.3g}" for k, v in fewer.items()))
    assert figures[(3, 1, "uniform")] < figures[(3, 0, "uniform")]


def test_stacks_with_vcut_patch_model_in_either_order(nodes):
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    alone = harness.sample(cache(nodes[0], model), *conds, steps=6)
    a = harness.sample(cache(nodes[0], nodes[1].execute(model, "exact").result[0]), *conds, steps=6)
    b = harness.sample(nodes[1].execute(cache(nodes[0], model), "exact").result[0], *conds, steps=6)
    assert rel_err(a, alone) <= 1e-5 and rel_err(b, alone) <= 1e-5


@pytest.mark.parametrize("order", ["cache first", "cut first"])
def test_cut_step_scheduler_keeps_the_feature_per_conditioning_row(nodes, deep_calls, caplog, order):
    model = harness.tiny_svd()
    if order == "cache first":
        stacked = nodes[2].execute(cache(nodes[0], model), 3, 0.0, "drop", 0.0).result[0]
    else:
        stacked = cache(nodes[0], nodes[2].execute(model, 3, 0.0, "drop", 0.0).result[0])
    calls = deep_calls(stacked)
    with caplog.at_level(logging.INFO, logger="vcut"):
        harness.sample(stacked, *harness.svd_conds(frames=FRAMES), steps=6)
    assert calls["output_blocks.3"] == [2, 2, 1, 1, 1, 1]  # guided steps 1-2, the cut at step 3
    assert calls["middle_block"] == [2, 1]  # steps 1 and 4: step 3 ran partially from step 1's conditional row
    assert not any("runs the whole UNet" in r.getMessage() for r in caplog.records)


def test_stacks_with_stiv_frame_replace(nodes):
    model = harness.tiny_svd()
    pos, neg, latent = harness.svd_conds(frames=FRAMES)
    image = pos[0][1]["concat_latent_image"]
    patched, anchored = nodes[3].execute(cache(nodes[0], model), latent, "0", 1.0, True, positive=pos).result
    out = harness.sample(patched, pos, neg, anchored, steps=6)
    assert torch.equal(out[0], image[0]) and not torch.equal(out[1], image[0])


@pytest.mark.parametrize("order", ["easycache first", "cache first"])
def test_composes_with_core_easycache(comfy_nodes, nodes, deep_calls, order):
    easycache = comfy_nodes.NODE_CLASS_MAPPINGS["EasyCache"]

    def ease(m):
        return easycache.execute(m, 0.2, 0.0, 1.0, False).result[0]
    model = harness.tiny_svd()
    stacked = cache(nodes[0], ease(model)) if order == "easycache first" else ease(cache(nodes[0], model))
    calls = deep_calls(stacked)
    out = harness.sample(stacked, *harness.svd_conds(frames=FRAMES), steps=8)
    assert torch.isfinite(out).all()
    assert len(calls["middle_block"]) <= 3 and len(calls["output_blocks.3"]) <= 8


def test_composes_with_core_lazycache(comfy_nodes, nodes, deep_calls):
    """LazyCache works on the guider's prediction: the cache's partial steps go on as scheduled under it."""
    lazycache = comfy_nodes.NODE_CLASS_MAPPINGS["LazyCache"]
    model = harness.tiny_svd()
    stacked = lazycache.execute(cache(nodes[0], model), 0.2, 0.0, 1.0, False).result[0]
    calls = deep_calls(stacked)
    out = harness.sample(stacked, *harness.svd_conds(frames=FRAMES), steps=8)
    assert torch.isfinite(out).all()
    assert 0 < len(calls["middle_block"]) <= 3 and len(calls["middle_block"]) < len(calls["output_blocks.3"])


def test_stacks_with_loop_conditioning_and_keeps_the_loop_closed(comfy_nodes, nodes, caplog):
    loop = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTLoopConditioning"]
    model = harness.tiny_svd()
    pos, neg, latent = harness.svd_conds(frames=FRAMES)
    image = pos[0][1]["concat_latent_image"]
    patched, p2, n2, lat = loop.execute(cache(nodes[0], model), pos, neg, latent, "sdslc", "inverted noise", True,
                                        True, 1.0, "still background", motion_mask=None).result
    deep = []
    handle = patched.model.diffusion_model.middle_block[0].register_forward_pre_hook(lambda m, a: deep.append(1))
    try:
        with caplog.at_level(logging.INFO, logger="vcut"):
            out = harness.sample(patched, p2, n2, lat, steps=6)
    finally:
        handle.remove()
    assert len(deep) == 2  # full steps 1 and 4
    assert torch.equal(out[0], image[0]) and torch.equal(out[-1], image[0])  # the loop stays closed
    assert not any("runs the whole UNet" in r.getMessage() for r in caplog.records)


def test_under_core_torch_compile_partial_steps_stay_partial_and_nothing_recompiles_per_step(nodes):
    """ComfyUI's own torch.compile wrapper (what TorchCompileModel sets, with its guard filter that skips guards on
    transformer_options) with the eager backend (no C++ compiler needed): the compiled run gives the uncompiled
    cached run's video, so the full / partial choice is made per step and not baked into a graph (before the fix,
    dynamo guarded on the step number and recompiled at every step until its recompile limit); a second run
    compiles nothing new."""
    import torch._dynamo
    from comfy_api.torch_helpers import set_torch_compile_wrapper
    from comfy_extras.nodes_torch_compile import skip_torch_compile_dict
    from torch._dynamo.utils import counters
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    cached = cache(nodes[0], model)
    eager = harness.sample(cached, *conds, steps=4)  # full steps 1 and 4, partial 2 and 3
    compiled = cached.clone()
    set_torch_compile_wrapper(model=compiled, backend="eager", options={"guard_filter_fn": skip_torch_compile_dict})
    torch._dynamo.reset()
    counters.clear()
    try:
        first = harness.sample(compiled, *conds, steps=4)
        graphs = counters["stats"]["unique_graphs"]
        second = harness.sample(compiled, *conds, steps=4)
        assert counters["stats"]["unique_graphs"] == graphs > 0
    finally:
        torch._dynamo.reset()
    assert rel_err(first, eager) <= 1e-5 and rel_err(second, eager) <= 1e-5
    assert rel_err(first, harness.sample(model, *conds, steps=4)) > 1e-5  # the compiled run did cache


def test_block_patches_make_partial_steps_run_fully_and_are_named(nodes, deep_calls, caplog):
    model = harness.tiny_svd().clone()
    model.set_model_input_block_patch(lambda h, options: h)
    patched = cache(nodes[0], model)
    calls = deep_calls(patched)
    with caplog.at_level(logging.INFO, logger="vcut"):
        out = harness.sample(patched, *harness.svd_conds(frames=FRAMES), steps=4)
    assert len(calls["middle_block"]) == 4
    assert torch.equal(out, harness.sample(model, *harness.svd_conds(frames=FRAMES), steps=4))
    assert any("step 2 runs the whole UNet: another node's input_block_patch" in r.getMessage()
               for r in caplog.records)


def test_bad_inputs_are_refused_with_clear_messages(nodes, caplog):
    import comfy.model_patcher
    import comfy.supported_models
    with pytest.raises(ValueError, match="interval must be a whole number >= 1"):
        cache(nodes[0], harness.tiny_svd(), interval=0)
    with pytest.raises(ValueError, match=r"branch must be a skip branch of this UNet, 0..3"):
        cache(nodes[0], harness.tiny_svd(), branch=4)
    with pytest.raises(ValueError, match=r"start_percent \(0.7\) must not be larger than end_percent \(0.3\)"):
        cache(nodes[0], harness.tiny_svd(), start=0.7, end=0.3)
    config = dict(harness.TINY_SVD_CONFIG, use_temporal_resblock=False, use_temporal_attention=False,
                  adm_in_channels=None, num_classes=None, in_channels=4)
    for key in ("extra_ff_mix_layer", "use_spatial_context", "merge_strategy", "merge_factor",
                "video_kernel_size", "disable_temporal_crossattention"):
        config.pop(key)
    sd15 = comfy.supported_models.SD15(config).get_model({})
    not_svd = comfy.model_patcher.ModelPatcher(sd15, torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"Stable Video Diffusion model.*got BaseModel with a UNetModel"):
        cache(nodes[0], not_svd)
    replaced = harness.tiny_svd().clone()
    replaced.add_object_patch("diffusion_model.middle_block", torch.nn.Identity())
    with caplog.at_level(logging.INFO, logger="vcut"):
        assert cache(nodes[0], replaced) is replaced
    assert any("another node replaced diffusion_model.middle_block" in r.getMessage() for r in caplog.records)


def test_one_server_across_prompts():
    def prompt(interval):
        return {
            "1": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}},
            "2": {"class_type": "VCUTFeatureCache", "inputs": {"model": ["1", 0], "interval": interval, "branch": 0,
                                                               "schedule": "uniform", "start_percent": 0.0,
                                                               "end_percent": 1.0}},
            "3": harness.ksampler_node(["2", 0], ["1", 1], ["1", 2], ["1", 3], steps=6),
            "4": {"class_type": "VCUTTestCapture", "inputs": {"value": ["3", 0], "key": "latent"}},
            "5": harness.ksampler_node(["1", 0], ["1", 1], ["1", 2], ["1", 3], steps=6),
            "6": {"class_type": "VCUTTestCapture", "inputs": {"value": ["5", 0], "key": "plain"}},
        }
    session = harness.Session()  # unchanged nodes are not run again: only the cache's branch is re-captured
    first = session.run(prompt(3))
    plain = first["plain"]["samples"]
    again = session.run(prompt(2))["latent"]["samples"]
    third = session.run(prompt(3))["latent"]["samples"]
    one = session.run(prompt(1))["latent"]["samples"]
    assert torch.equal(first["latent"]["samples"], third)
    assert not torch.equal(third, again) and not torch.equal(third, plain)
    assert torch.equal(one, plain)


def test_cost_report_is_shown_on_the_sampler_node_of_a_real_server(tmp_path):
    """A real ComfyUI server (main.py on 127.0.0.1): the run's cost report reaches the browser as ComfyUI's own
    progress-text message (binary event 3: node id + text) addressed to the KSampler node."""
    from comfy_servers import comfy_servers, progress_texts

    prompt = {
        "ckpt": {"class_type": "VCUTTestCheckpoint", "inputs": {"ckpt_name": ""}},
        "img": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 8421504}},
        "cond": {"class_type": "SVD_img2vid_Conditioning", "inputs": {
            "clip_vision": ["ckpt", 1], "init_image": ["img", 0], "vae": ["ckpt", 2], "width": 32, "height": 32,
            "video_frames": FRAMES, "motion_bucket_id": 127, "fps": 6, "augmentation_level": 0.0}},
        "cache": {"class_type": "VCUTFeatureCache", "inputs": {"model": ["ckpt", 0], "interval": 3, "branch": 0,
                                                               "schedule": "uniform", "start_percent": 0.0,
                                                               "end_percent": 1.0}},
        "sampler": harness.ksampler_node(["cache", 0], ["cond", 0], ["cond", 1], ["cond", 2], steps=4),
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}},
        "preview": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }

    with comfy_servers(tmp_path / "servers", 1) as (server,):
        texts = progress_texts(server.url, prompt)
    reports = [text for node, text in texts if node == "sampler" and text.startswith("VCUT run: ")]
    assert len(reports) == 1, texts
    assert "UNet Feature Cache: " in reports[0]
    assert "2 full" in reports[0] and "2 partial" in reports[0] and "GMACs" in reports[0]


WINDOW_FRAMES = 9  # more frames than one core context window (context_length 4): every model call is split


def test_context_windows_keep_a_feature_per_window(comfy_nodes, nodes, capsys):
    """Core "Context Windows (Manual)" calls the UNet once per window with the same conditioning uuids: the cache
    keeps one feature per conditioning AND window, so a partial step uses its own window's feature. Its difference
    to the uncached video with windows is then of the order of the difference without windows (one feature per
    conditioning made it about 9x larger)."""
    if "ContextWindowsManual" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no core context windows")
    from test_cut_with_core_nodes import with_context_windows
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=WINDOW_FRAMES)
    windowed = with_context_windows(comfy_nodes, model)
    figures = {}
    for name, base in (("without windows", model), ("with windows", windowed)):
        plain = harness.sample(base, *conds, steps=9)
        figures[name] = rel_err(harness.sample(cache(nodes[0], base), *conds, steps=9), plain)
    with capsys.disabled():
        print(f"\nfeature cache N=3 branch 0, tiny SVD, {WINDOW_FRAMES} frames, 9 euler steps: relative L2 difference "
              "to the uncached latent: " + ", ".join(f"{k}: {v:.3g}" for k, v in figures.items()) +
              f" (ratio {figures['with windows'] / figures['without windows']:.2f})")
    assert 0 < figures["with windows"] <= 2 * figures["without windows"]


def test_context_windows_run_partial_steps_from_their_own_window(comfy_nodes, nodes, deep_calls, caplog):
    """Every window of a partial step runs partially (none falls back to a full step for want of its feature), and
    the deep blocks run on full steps only, once per window."""
    if "ContextWindowsManual" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no core context windows")
    from test_cut_with_core_nodes import with_context_windows
    cached = cache(nodes[0], with_context_windows(comfy_nodes, harness.tiny_svd()))
    calls = deep_calls(cached)
    with caplog.at_level(logging.INFO, logger="vcut"):
        harness.sample(cached, *harness.svd_conds(frames=WINDOW_FRAMES), steps=6)
    windows = len(calls["input_blocks.0"]) // 6
    assert windows >= 2 and len(calls["input_blocks.0"]) == 6 * windows
    assert len(calls["middle_block"]) == 2 * windows  # full steps 1 and 4, every window
    report = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("VCUT run: "))
    assert f"{2 * windows} full" in report and f"{4 * windows} partial" in report
    assert "runs the whole UNet" not in caplog.text and "stepped aside" not in caplog.text
