"""VCUT across a ComfyUI session: several prompts through ONE PromptExecutor and one loaded model, the graph edited
between them, other nodes stacked beside ours (../shared/DESIGN.md, "Session correctness").

Every prompt's result is compared with the same prompt run in a fresh session (no model loaded, every node run).
The fresh references are computed after the whole sequence, so that each prompt of the sequence meets what the
previous one left loaded, as on a server.
"""
import logging
import re

import harness
import pytest
import torch
from harness import rel_err_max as rel_err
from safetensors import safe_open
from safetensors.torch import save_file

FRAMES = 3
STEPS = 3
SOURCE = {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}}
TO_Q_CALLS: list[int] = []
MODEL_INPUT = {"ModelMergeSimple": "model1"}  # nodes whose MODEL input has another name


def capture(value, key):
    return {"class_type": "VCUTTestCapture", "inputs": {"value": value, "key": key}}


def graph(model_chain, steps=STEPS, positive=("1", 1), extra=None):
    """Source "1", then `model_chain` [(class_type, inputs)] applied in order to its MODEL, then a KSampler."""
    prompt = {"1": dict(SOURCE)}
    model = ["1", 0]
    for index, (class_type, inputs) in enumerate(model_chain, start=10):
        prompt[str(index)] = {"class_type": class_type,
                              "inputs": {MODEL_INPUT.get(class_type, "model"): model, **inputs}}
        model = [str(index), 0]
    prompt.update(extra or {})
    prompt["2"] = harness.ksampler_node(model, list(positive), ["1", 2], ["1", 3], steps=steps)
    prompt["3"] = capture(["2", 0], "latent")
    return prompt


def vcut(mode="exact"):
    return ("VCUTPatchModel", {"mode": mode})


def lora(strength, name="vcut_test_lora.safetensors"):
    return ("LoraLoaderModelOnly", {"lora_name": name, "strength_model": strength})


def count_to_q_calls(session):
    """Forward hooks on every attn2.to_q of the session's loaded model (the same Linear modules whether the live
    tree holds the original attention or a VCUT stand-in)."""
    model = session.run({"1": dict(SOURCE), "9": capture(["1", 0], "model")})["model"]
    seen = set()
    for name, module in model.model.diffusion_model.named_modules():
        if name.endswith("attn2.to_q") and id(module) not in seen:
            seen.add(id(module))
            module.register_forward_hook(lambda *_: TO_Q_CALLS.append(1))
    assert seen
    return model


def run_sequence(prompts):
    """Runs `prompts` in one session; returns [(latent, to_q calls)] and the fresh-session latents."""
    session = harness.Session()
    count_to_q_calls(session)
    results = []
    for prompt in prompts:
        TO_Q_CALLS.clear()
        results.append((session.run(prompt)["latent"]["samples"], len(TO_Q_CALLS)))
    fresh = [harness.fresh_session_run(prompt)["latent"]["samples"] for prompt in prompts]
    return results, fresh


@pytest.fixture(scope="module")
def lora_file(comfy_nodes):
    """A LoRA for the tiny SVD with every attn2 projection (to_q, to_k, to_v, to_out.0) and every attn1.to_v, in
    the kohya key format ComfyUI maps (lora_unet_<module path>), in a temporary loras folder."""
    import folder_paths
    model = harness.tiny_svd()
    generator = torch.Generator().manual_seed(7)
    tensors = {}
    for key, weight in model.model.state_dict().items():
        if not re.search(r"attn2\.to_(q|k|v|out\.0)\.weight$|attn1\.to_v\.weight$", key):
            continue
        name = "lora_unet_" + key[len("diffusion_model."):-len(".weight")].replace(".", "_")
        out_features, in_features = weight.shape
        tensors[f"{name}.lora_up.weight"] = torch.randn(out_features, 4, generator=generator) * 0.2
        tensors[f"{name}.lora_down.weight"] = torch.randn(4, in_features, generator=generator) * 0.2
        tensors[f"{name}.alpha"] = torch.tensor(4.0)
    folder = harness.scratch_dir() / "loras"
    folder.mkdir(exist_ok=True)
    save_file(tensors, str(folder / "vcut_test_lora.safetensors"))
    folder_paths.add_model_folder_path("loras", str(folder))
    return sum(1 for k in tensors if k.endswith(".alpha"))


def test_mode_switches_and_upstream_edits_keep_vcut_in_effect(comfy_nodes):
    linear_cfg = ("VideoLinearCFGGuidance", {"min_cfg": 1.0})
    chains = [[vcut("exact")], [vcut("paper")], [vcut("exact")], [linear_cfg, vcut("exact")],
              [linear_cfg, vcut("paper")], [vcut("paper")]]
    results, fresh = run_sequence([graph(chain) for chain in chains])
    for (latent, to_q), reference, chain in zip(results, fresh, chains, strict=False):
        assert to_q == 0, f"attn2.to_q ran {to_q} times in {chain}: VCUT was not in effect"
        assert rel_err(latent, reference) <= 1e-6, chain
    unpatched = harness.fresh_session_run(graph([]))["latent"]["samples"]
    # exact = the unpatched computation; to_out on 2 rows instead of every pixel's row rounds differently in fp32
    assert rel_err(results[0][0], unpatched) <= 5e-5
    assert rel_err(results[1][0], unpatched) > 1e-3  # paper removes temporal cross-attention


def test_lora_strength_changed_six_times_upstream_of_vcut(lora_file, caplog):
    strengths = [1.0, 0.5, 1.5, 0.25, 1.0, 2.0]
    with caplog.at_level(logging.WARNING):
        results, fresh = run_sequence([graph([lora(s), vcut("exact")]) for s in strengths])
    assert "lora key not loaded" not in caplog.text
    assert [to_q for _, to_q in results] == [0] * len(strengths)
    for (latent, _), reference in zip(results, fresh, strict=False):
        assert rel_err(latent, reference) <= 1e-6
    assert rel_err(results[0][0], results[1][0]) > 1e-4  # the strength does change the video


def test_lora_and_merge_on_the_unpatched_model_after_a_paper_prompt(lora_file, caplog):
    merge = {"5": {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 1}}}
    merged = graph([("ModelMergeSimple", {"model2": ["5", 0], "ratio": 0.5})], extra=merge)
    prompts = [graph([vcut("paper")]), graph([lora(1.0)]), graph([vcut("paper")]), merged]
    with caplog.at_level(logging.WARNING):
        results, fresh = run_sequence(prompts)
    assert "lora key not loaded" not in caplog.text
    for (latent, _), reference in zip(results, fresh, strict=False):
        assert rel_err(latent, reference) <= 1e-6


@pytest.mark.parametrize("mode", ["exact", "paper"])
def test_model_save_of_a_vcut_model_holds_every_key(comfy_nodes, tmp_path, mode):
    def saved_keys(prefix, chain):
        prompt = {"1": dict(SOURCE)}
        model = ["1", 0]
        for index, (class_type, inputs) in enumerate(chain, start=10):
            prompt[str(index)] = {"class_type": class_type, "inputs": {"model": model, **inputs}}
            model = [str(index), 0]
        prompt["2"] = {"class_type": "ModelSave", "inputs": {"model": model, "filename_prefix": prefix}}
        with harness.comfy_folders(output_dir=tmp_path):
            harness.run_prompt(prompt)
        with safe_open(str(next(tmp_path.glob(f"{prefix}*.safetensors"))), "pt") as f:
            return {key: f.get_slice(key).get_shape() for key in f.keys()}
    session = harness.Session()
    session.run(graph([vcut(mode)]))  # a VCUT model is loaded when the save runs
    assert saved_keys(f"vcut_{mode}", [vcut(mode)]) == saved_keys("plain", [])


def hooked_graph(chain, keyframes):
    """A hook LoRA on the positive conditioning with strength keyframes [(strength_mult, start_percent)]: ComfyUI
    copies new weights into the same tensors mid-run when a keyframe starts."""
    extra = {"20": {"class_type": "CreateHookLora", "inputs": {
        "lora_name": "vcut_test_lora.safetensors", "strength_model": 1.0, "strength_clip": 1.0}}}
    previous = None
    for index, (strength, start) in enumerate(keyframes, start=21):
        inputs = {"strength_mult": strength, "start_percent": start}
        if previous:
            inputs["prev_hook_kf"] = previous
        extra[str(index)] = {"class_type": "CreateHookKeyframe", "inputs": inputs}
        previous = [str(index), 0]
    extra["30"] = {"class_type": "SetHookKeyframes", "inputs": {"hooks": ["20", 0], "hook_kf": previous}}
    extra["31"] = {"class_type": "ConditioningSetProperties", "inputs": {
        "cond_NEW": ["1", 1], "strength": 1.0, "set_cond_area": "default", "hooks": ["30", 0]}}
    return graph(chain, steps=5, positive=("31", 0), extra=extra)


def test_hook_lora_with_keyframes_stays_exact(lora_file):
    keyframes = [(1.0, 0.0), (0.2, 0.3)]
    session = harness.Session()
    patched = session.run(hooked_graph([vcut("exact")], keyframes))["latent"]["samples"]
    unpatched = session.run(hooked_graph([], keyframes))["latent"]["samples"]
    constant = session.run(hooked_graph([], [(1.0, 0.0)]))["latent"]["samples"]
    assert rel_err(patched, unpatched) <= 1e-5
    assert rel_err(unpatched, constant) > 1e-4  # the keyframe does change the weights mid-run


class StackAttentionPatches:
    """Test-only node: what other packs do to attn2, an attn2 replace patch on every block (the real attention
    with its output scaled) and an attn2 output patch that writes into its input."""
    FUNCTION = "patch"
    RETURN_TYPES = ("MODEL",)
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    def patch(self, model):
        from comfy.ldm.modules.attention import optimized_attention
        patched = model.clone()

        def replace(q, k, v, extra_options):
            return optimized_attention(q, k, v, extra_options["n_heads"]) * 1.25

        def scale_in_place(n, extra_options):
            return n.mul_(0.5)
        for block_name, count in (("input", 12), ("middle", 1), ("output", 12)):
            for number in range(count):
                patched.set_model_attn2_replace(replace, block_name, number, 0)
        patched.set_model_attn2_output_patch(scale_in_place)
        return (patched,)


def test_attn2_replace_and_output_patches_of_other_nodes_work_on_a_vcut_model(comfy_nodes, caplog):
    comfy_nodes.NODE_CLASS_MAPPINGS["VCUTTestStackAttention"] = StackAttentionPatches
    stack = ("VCUTTestStackAttention", {})
    session = harness.Session()
    with caplog.at_level(logging.INFO, logger="vcut"):
        before = session.run(graph([stack, vcut("exact")]))["latent"]["samples"]
        after = session.run(graph([vcut("exact"), stack]))["latent"]["samples"]
    plain = session.run(graph([stack]))["latent"]["samples"]
    assert rel_err(before, plain) <= 1e-5 and rel_err(after, plain) <= 1e-5
    assert rel_err(plain, session.run(graph([]))["latent"]["samples"]) > 1e-3  # the patches do something
    assert "run the real cross-attention" in caplog.text


def skipped_steps(log_text, name):
    counts = re.findall(rf"{name} - skipped (\d+)/(\d+) steps", log_text)
    assert counts, f"no {name} summary in the log"
    return int(counts[-1][0])


@pytest.mark.parametrize("cache_node", ["EasyCache", "LazyCache"])
def test_easycache_and_lazycache_keep_skipping_after_the_cut(comfy_nodes, caplog, cache_node):
    steps, cut_step = 12, 6
    cache = (cache_node, {"reuse_threshold": 0.2, "start_percent": 0.15, "end_percent": 0.95, "verbose": False})
    cut = ("VCUTCutStepScheduler", {"cut_step": cut_step, "cut_fraction": 0.0, "after_cut": "drop",
                                    "auto_threshold": 0.0})
    session = harness.Session()
    model = session.run({"1": dict(SOURCE), "9": capture(["1", 0], "model")})["model"]
    rows = []  # rows of every UNet evaluation that really ran (a skipped step runs none)
    model.model.diffusion_model.input_blocks[0][0].register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    counts = {}
    for label, chain in (("cache", [cache]), ("cache+cut", [cache, cut]), ("cut+cache", [cut, cache])):
        caplog.clear()
        rows.clear()
        with caplog.at_level(logging.INFO):
            session.run(graph(chain, steps=steps))
        unguided_run = sum(r == FRAMES for r in rows)
        counts[label] = {"skipped": skipped_steps(caplog.text, cache_node),
                         "skipped after the cut": (steps - cut_step + 1) - unguided_run if "cut" in label else None}
    print(f"{cache_node}, {steps} steps, cut at step {cut_step}: {counts}")
    assert counts["cache"]["skipped"] > 0
    for label in ("cache+cut", "cut+cache"):
        assert counts[label]["skipped after the cut"] > 0, counts


def test_dual_cfg_guider_is_cut_on_its_three_conditionings(comfy_nodes, caplog):
    calls = []

    comfy_nodes.NODE_CLASS_MAPPINGS["VCUTTestRecordRows"] = harness.rows_recorder(calls)

    def prompt(cut_step, style):
        return {
            "1": dict(SOURCE),
            "10": {"class_type": "VCUTCutStepScheduler", "inputs": {
                "model": ["1", 0], "cut_step": cut_step, "cut_fraction": 0.0, "after_cut": "drop",
                "auto_threshold": 0.0}},
            "11": {"class_type": "VCUTTestRecordRows", "inputs": {"model": ["10", 0]}},
            "12": {"class_type": "DualCFGGuider", "inputs": {
                "model": ["11", 0], "cond1": ["1", 1], "cond2": ["1", 1], "negative": ["1", 2],
                "cfg_conds": 2.0, "cfg_cond2_negative": 1.5, "style": style}},
            "13": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
            "14": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "karras", "steps": 4,
                                                             "denoise": 1.0}},
            "15": {"class_type": "RandomNoise", "inputs": {"noise_seed": 0}},
            "16": {"class_type": "SamplerCustomAdvanced", "inputs": {
                "noise": ["15", 0], "guider": ["12", 0], "sampler": ["13", 0], "sigmas": ["14", 0],
                "latent_image": ["1", 3]}},
            "17": capture(["16", 0], "latent"),
        }
    with caplog.at_level(logging.INFO, logger="vcut"):
        for style in ("regular", "nested"):
            cut = harness.run_prompt(prompt(3, style))["latent"]["samples"]
            assert [r // FRAMES for r, _ in calls[-1]] == [3, 3, 1, 1]  # steps 3-4: the positive rows only
            no_guidance = harness.run_prompt(prompt(1, style))["latent"]["samples"]
            assert [r // FRAMES for r, _ in calls[-1]] == [1, 1, 1, 1]
            guided = harness.run_prompt(prompt(9, style))["latent"]["samples"]
            assert [r // FRAMES for r, _ in calls[-1]] == [3, 3, 3, 3]
            assert torch.isfinite(cut).all() and rel_err(cut, guided) > 1e-4 and rel_err(cut, no_guidance) > 1e-4
    assert "Guider_DualCFG: positive, middle, negative" in caplog.text


def test_removed_or_foreign_attn2_is_named_in_the_log(comfy_nodes, caplog):
    import comfy.ldm.modules.attention  # noqa: F401  (loaded, as ComfyUI has it loaded, before the patch)
    node = comfy_nodes.NODE_CLASS_MAPPINGS["VCUTPatchModel"]
    model = harness.tiny_svd()
    site = "input_blocks.1.1.transformer_blocks.0.attn2"
    other = model.clone()
    other.add_object_patch(f"diffusion_model.{site}", torch.nn.Identity())
    removed = model.clone()
    removed.add_object_patch(f"diffusion_model.{site.replace('transformer_blocks', 'time_stack')}", None)
    with caplog.at_level(logging.INFO, logger="vcut"):
        node.execute(other, "exact")
        node.execute(removed, "exact")
    assert f"{site} (Identity has no to_q" in caplog.text
    assert "time_stack.0.attn2 (no attn2 here (removed by another node?))" in caplog.text
