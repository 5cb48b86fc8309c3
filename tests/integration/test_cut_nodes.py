"""VCUT Patch Model and Cut Step Scheduler on ComfyUI's own SVD model, samplers, loader and executor."""
import json

import harness
import pytest
import torch
from harness import rel_err_max as rel_err

FRAMES = 3


@pytest.fixture()
def vcut(comfy_nodes):
    return comfy_nodes.NODE_CLASS_MAPPINGS["VCUTPatchModel"], comfy_nodes.NODE_CLASS_MAPPINGS["VCUTCutStepScheduler"]


def patch(node, model, mode="exact"):
    return node.execute(model, mode).result[0]


def cut(node, model, cut_step, after_cut="drop", cut_fraction=0.0):
    return node.execute(model, cut_step, cut_fraction, after_cut, 0.0).result[0]


def test_pack_loads_through_comfyui_loader_with_every_node():
    module = harness.pack_module()
    expected = sorted(cls.define_schema().node_id for cls in module.nodes.ALL_NODES)
    assert harness.pack_node_ids() == expected
    assert {"VCUTPatchModel", "VCUTCutStepScheduler"} <= set(expected)


def test_exact_mode_samples_the_same_video_and_leaves_the_input_model_untouched(vcut):
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    weights = {k: v.clone() for k, v in model.model.state_dict().items()}
    expected = harness.sample(model, *conds)
    patched = patch(vcut[0], model)
    for _ in range(2):
        assert rel_err(harness.sample(patched, *conds), expected) <= 1e-5
    assert torch.equal(harness.sample(model, *conds), expected)  # ComfyUI unpatches the clone's object patches
    after = model.model.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(after[k], v) for k, v in weights.items())
    modules = [m for m in patched.object_patches.values() if hasattr(m, "vectors_computed")]
    assert len(modules) == 2 * 7  # tiny UNet: 7 video transformers, a spatial and a temporal attn2 each


def test_paper_mode_differs_only_by_temporal_cross_attention(vcut):
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    paper = harness.sample(patch(vcut[0], model, "paper"), *conds)
    assert torch.isfinite(paper).all()
    assert not torch.allclose(paper, harness.sample(model, *conds))
    assert patch(vcut[0], patch(vcut[0], model, "paper"), "paper").object_patches.keys() == \
        patch(vcut[0], model, "paper").object_patches.keys()


@pytest.mark.parametrize("sampler,steps,cut_step,rows", [
    ("euler", 5, 3, [2, 2, 1, 1, 1]),
    ("heun", 4, 3, [2, 2, 2, 2, 1, 1, 1]),  # two calls per step but the last; step 2's second call is guided
    ("dpm_2", 3, 2, [2, 2, 1, 1, 1]),
    ("euler", 4, 9, [2, 2, 2, 2]),  # c > N: nothing cut
    ("euler", 4, 1, [1, 1, 1, 1]),  # c = 1: no guidance at all
])
def test_rows_per_unet_call_follow_the_cut(vcut, sampler, steps, cut_step, rows):
    model = cut(vcut[1], patch(vcut[0], harness.tiny_svd()), cut_step)
    recorded, calls = harness.record_unet_calls(model)
    harness.sample(recorded, *harness.svd_conds(frames=FRAMES), steps=steps, sampler=sampler)
    assert [r // FRAMES for r, _ in calls] == rows


def test_cut_counts_steps_of_a_partial_denoise(vcut):
    recorded, calls = harness.record_unet_calls(cut(vcut[1], harness.tiny_svd(), 3))
    harness.sample(recorded, *harness.svd_conds(frames=FRAMES), steps=4, denoise=0.5)
    assert [r // FRAMES for r, _ in calls] == [2, 2, 1, 1]


def test_both_chaining_orders_give_the_same_video(vcut):
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    a = harness.sample(cut(vcut[1], patch(vcut[0], model), 3), *conds)
    b = harness.sample(patch(vcut[0], cut(vcut[1], model, 3)), *conds)
    assert rel_err(a, b) <= 1e-5


def test_cut_behind_video_linear_cfg_guidance_equals_cfg_one(comfy_nodes, vcut):
    model = harness.tiny_svd()
    conds = harness.svd_conds(frames=FRAMES)
    guidance = comfy_nodes.NODE_CLASS_MAPPINGS["VideoLinearCFGGuidance"]
    guided = guidance.execute(model, 1.0).result[0] if hasattr(guidance, "define_schema") else \
        guidance().patch(model, 1.0)[0]
    no_guidance = harness.sample(cut(vcut[1], guided, 1), *conds, cfg=2.5)
    assert torch.equal(no_guidance, harness.sample(model, *conds, cfg=1.0))
    reuse = harness.sample(cut(vcut[1], guided, 3, after_cut="reuse_delta"), *conds, cfg=2.5)
    dropped = harness.sample(cut(vcut[1], guided, 3), *conds, cfg=2.5)
    assert not torch.equal(reuse, dropped)


def test_fraction_form(vcut):
    recorded, calls = harness.record_unet_calls(cut(vcut[1], harness.tiny_svd(), 17, cut_fraction=0.5))
    harness.sample(recorded, *harness.svd_conds(frames=FRAMES), steps=4)
    assert [r // FRAMES for r, _ in calls] == [2, 2, 1, 1]


def test_bad_inputs_are_refused_with_clear_messages(vcut):
    import comfy.model_patcher
    import comfy.supported_models
    config = dict(harness.TINY_SVD_CONFIG, use_temporal_resblock=False, use_temporal_attention=False,
                  adm_in_channels=None, num_classes=None)
    for key in ("extra_ff_mix_layer", "use_spatial_context", "merge_strategy", "merge_factor",
                "video_kernel_size", "disable_temporal_crossattention"):
        config.pop(key)
    config["in_channels"] = 4
    sd15 = comfy.supported_models.SD15(config).get_model({})
    not_svd = comfy.model_patcher.ModelPatcher(sd15, torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match=r"model: VCUT needs a Stable Video Diffusion model.*got BaseModel"):
        patch(vcut[0], not_svd)
    with pytest.raises(ValueError, match="cut_step must be"):
        cut(vcut[1], harness.tiny_svd(), 0)
    with pytest.raises(ValueError, match=r"cut_fraction must be 0 \(use cut_step\) or in \(0, 1\]"):
        cut(vcut[1], harness.tiny_svd(), 17, cut_fraction=1.5)


def test_graph_runs_in_comfyui_executor():
    prompt = {
        "1": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}},
        "2": {"class_type": "VCUTPatchModel", "inputs": {"model": ["1", 0], "mode": "exact"}},
        "3": {"class_type": "VCUTCutStepScheduler", "inputs": {"model": ["2", 0], "cut_step": 3, "cut_fraction": 0.0,
                                                            "after_cut": "drop", "auto_threshold": 0.0}},
        "4": harness.ksampler_node(["3", 0], ["1", 1], ["1", 2], ["1", 3]),
        "5": {"class_type": "VCUTTestCapture", "inputs": {"value": ["4", 0], "key": "latent"}},
        "6": harness.ksampler_node(["1", 0], ["1", 1], ["1", 2], ["1", 3]),
        "7": {"class_type": "VCUTTestCapture", "inputs": {"value": ["6", 0], "key": "plain"}},
    }
    out = harness.run_prompt(prompt)
    assert out["latent"]["samples"].shape == (FRAMES, 4, 8, 8)
    assert not torch.equal(out["latent"]["samples"], out["plain"]["samples"])  # the cut changes steps 3-4


def test_vcut_workflow_chains_the_cut_nodes():
    """The example workflow puts the VCUT nodes between SVD's conditioning and the sampler (its UI-format checks and
    its run through the executor are in test_workflows.py)."""
    workflow = json.loads((harness.PACK_ROOT / "workflows" / "svd_vcut_img2vid.json").read_text())
    types = {node["type"] for node in workflow["nodes"]}
    assert {"ImageOnlyCheckpointLoader", "SVD_img2vid_Conditioning", "VideoLinearCFGGuidance", "VCUTPatchModel",
            "VCUTCutStepScheduler", "KSampler", "VCUTSeamlessVideoDecode"} <= types


def test_patch_layer_replaces_its_own_key_only_and_never_the_input_model(comfy_nodes):
    """nodes/patch_layer.ModelPatch on ComfyUI's own ModelPatcher: set_wrappers replaces what the same feature
    attached (a second Cut Step Scheduler), add_wrappers stacks, other keys (core EasyCache's, another feature's)
    stay, the input model keeps no wrapper, and a key the pack does not own is refused."""
    import comfy.patcher_extension

    layer = harness.pack_module().nodes.patch_layer
    outer = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
    model = harness.tiny_svd()
    model.add_wrapper_with_key(outer, "easycache", lambda executor, *a, **k: executor(*a, **k))
    first = layer.ModelPatch(model)
    first.set_wrappers(layer.CUT_STEP, {outer: "a"})
    first.add_wrappers(layer.FRAME_REPLACE, {outer: "b"})
    second = layer.ModelPatch(first.patcher)
    second.set_wrappers(layer.CUT_STEP, {outer: "c"})
    second.add_wrappers(layer.FRAME_REPLACE, {outer: "d"})
    assert second.patcher.wrappers[outer][layer.CUT_STEP] == ["c"]
    assert second.patcher.wrappers[outer][layer.FRAME_REPLACE] == ["b", "d"]
    assert first.patcher.wrappers[outer][layer.CUT_STEP] == ["a"]  # the earlier clone is unchanged
    assert list(model.wrappers[outer]) == ["easycache"] and len(second.patcher.wrappers[outer]["easycache"]) == 1
    second.remove_wrappers(layer.FRAME_REPLACE)
    assert not second.patcher.wrappers[outer].get(layer.FRAME_REPLACE)
    with pytest.raises(ValueError, match="'easycache' is not a key of the pack's namespace"):
        second.set_wrappers("easycache", {outer: "e"})
