"""Cut Step Scheduler beside core nodes that hook calc_cond_batch or copy model_options (../shared/DESIGN.md,
"ComfyUI versions the pack meets"): core context windows, the MultiGPU CFG split (0.30.0), EasyCache's holder, and
clones of one model with different cuts (0.30.0's clone copies model_options with deepcopy_list_dict, #12382).
ComfyUI's own nodes, samplers and executor; whatever a release lacks is skipped by what exists in it."""
import logging

import harness
import pytest
import torch
from harness import rel_err_max as rel_err

FRAMES = 3
WINDOW_FRAMES = 7   # more frames than the context length: core context windows split every model call
CONTEXT_LENGTH = 4
SOURCE = {"class_type": "VCUTTestTinySVD", "inputs": {"frames": FRAMES, "seed": 0}}


def cut(nodes, model, cut_step, after_cut="drop"):
    return nodes.NODE_CLASS_MAPPINGS["VCUTCutStepScheduler"].execute(model, cut_step, 0.0, after_cut, 0.0).result[0]


def node_defaults(node_class) -> dict:
    """Every widget of a node at its default, read from the running ComfyUI's own definition."""
    inputs = node_class.INPUT_TYPES()
    values = {}
    for group in ("required", "optional"):
        for name, spec in inputs.get(group, {}).items():
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if "default" in options:
                values[name] = options["default"]
            elif isinstance(spec[0], list) and spec[0]:  # a combo: its options (0.8.0's V3 schema: "options")
                values[name] = spec[0][0]
            elif options.get("options"):
                values[name] = options["options"][0]
    return values


def with_context_windows(nodes, model, context_length=CONTEXT_LENGTH, overlap=1):
    """Core "Context Windows (Manual)" on the frame axis (SVD's frames are the batch, dim 0), the other widgets at
    this release's defaults, except 0.30.0's causal_window_fix: its extra anchor frame makes a window one frame
    longer than the num_video_frames core gives SVD (context_length), and SVD's UNet fails on it with or without
    the pack ("can't divide axis of length 10 in chunks of 4")."""
    node = nodes.NODE_CLASS_MAPPINGS["ContextWindowsManual"]
    settings = {**node_defaults(node), "context_length": context_length, "context_overlap": overlap, "dim": 0}
    if "causal_window_fix" in settings:
        settings["causal_window_fix"] = False
    settings.pop("model", None)
    out = node.execute(model, **settings)
    return out.result[0] if hasattr(out, "result") else out[0]


def rows_per_call(model, steps, sampler="euler", frames=WINDOW_FRAMES, **kwargs):
    recorded, calls = harness.record_unet_calls(model)
    latent = harness.sample(recorded, *harness.svd_conds(frames=frames), steps=steps, sampler=sampler, **kwargs)
    return [rows for rows, _ in calls], latent


@pytest.fixture()
def nodes(comfy_nodes):
    if "ContextWindowsManual" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no core context windows")
    return comfy_nodes


@pytest.mark.parametrize("sampler,steps,cut_step,factors", [
    ("euler", 4, 3, [2, 2, 1, 1]),
    ("heun", 3, 2, [2, 2, 1, 1, 1]),  # the step is counted once per evaluation, not once per window
])
def test_context_windows_keep_the_cut_in_every_window(nodes, sampler, steps, cut_step, factors):
    """More than the context length of frames in one pass: each window's UNet call has both branches' rows before
    the cut and the positive rows only after it (the windows hand calc_cond_batch copies of the conditionings)."""
    model = nodes.NODE_CLASS_MAPPINGS["VCUTPatchModel"].execute(harness.tiny_svd(), "exact").result[0]
    windowed = with_context_windows(nodes, model)
    full, _ = rows_per_call(cut(nodes, windowed, steps + 5), steps, sampler)
    cut_rows, latent = rows_per_call(cut(nodes, windowed, cut_step), steps, sampler)
    windows = len(full) // len(factors)
    assert windows >= 2 and len(full) == windows * len(factors)  # the windows really split each model call
    assert max(full) // 2 < WINDOW_FRAMES
    expected = [rows * factor // 2 for rows, factor in zip(full, (f for f in factors for _ in range(windows)), strict=False)]
    assert cut_rows == expected
    assert torch.isfinite(latent).all()


def test_context_windows_with_the_cut_equal_guided_then_unguided_sampling(nodes):
    """The cut under context windows is the same video as sampling steps 1..c-1 with CFG and steps c..N with cfg 1
    (KSamplerAdvanced's start/end steps), both with the same windows."""
    steps, cut_step = 4, 3
    windowed = with_context_windows(nodes, harness.tiny_svd())
    positive, negative, latent = harness.svd_conds(frames=WINDOW_FRAMES)
    got = harness.sample(cut(nodes, windowed, cut_step), positive, negative, latent, steps=steps)
    first = nodes.common_ksampler(windowed, 0, steps, 2.5, "euler", "karras", positive, negative, latent,
                                  start_step=0, last_step=cut_step - 1, force_full_denoise=False)[0]
    second = nodes.common_ksampler(windowed, 0, steps, 1.0, "euler", "karras", positive, negative, first,
                                   disable_noise=True, start_step=cut_step - 1, last_step=steps)[0]["samples"]
    assert rel_err(got, second) <= 1e-5
    assert rel_err(got, harness.sample(windowed, positive, negative, latent, steps=steps)) > 1e-4


def test_reuse_delta_under_context_windows_reuses_each_windows_own_delta(nodes):
    """After the cut, the outputs a window hands the guider are [cond, cond - delta] with delta = cond - uncond of
    THAT window's last guided call: recorded by a CALC_COND_BATCH wrapper outside the cut's (inside the windows)."""
    from comfy.patcher_extension import WrappersMP
    seen = []  # (sigma, window, positive output - negative output)

    def record(executor, model, conds, x_in, timestep, model_options):
        out = executor(model, conds, x_in, timestep, model_options)
        window = model_options["transformer_options"]["context_window"].index_list
        seen.append((float(timestep.max()), tuple(window), out[0] - out[1]))
        return out
    recorded = harness.tiny_svd().clone()
    recorded.add_wrapper_with_key(WrappersMP.CALC_COND_BATCH, "test_record", record)  # before the cut's: outside
    windowed = with_context_windows(nodes, recorded)
    harness.sample(cut(nodes, windowed, 3, after_cut="reuse_delta"), *harness.svd_conds(frames=WINDOW_FRAMES),
                   steps=4)
    sigmas = sorted({s for s, _, _ in seen}, reverse=True)
    windows = sorted({w for _, w, _ in seen})
    assert len(sigmas) == 4 and len(windows) >= 2
    last_guided = {w: d for s, w, d in seen if s == sigmas[1]}  # step 2, the last guided step
    assert rel_err(last_guided[windows[0]], last_guided[windows[1]]) > 0.1  # the windows' deltas differ
    after_cut = [(w, d) for s, w, d in seen if s in sigmas[2:]]
    assert len(after_cut) == 2 * len(windows)
    for window, delta in after_cut:  # cond - (cond - delta): equal up to float rounding
        assert rel_err(delta, last_guided[window]) <= 1e-5, window


def test_multigpu_cfg_split_in_the_graph_keeps_the_cut(comfy_nodes):
    """Core "MultiGPU CFG Split" (0.30.0, #7063) between the cut and the sampler: on the CPU it has one device; the
    graph runs and the cut still removes the unconditional rows."""
    if "MultiGPU_WorkUnits" not in comfy_nodes.NODE_CLASS_MAPPINGS:
        pytest.skip("this ComfyUI has no MultiGPU CFG split node")
    calls = []

    comfy_nodes.NODE_CLASS_MAPPINGS["VCUTTestRecordRows"] = harness.rows_recorder(calls)
    split = {**node_defaults(comfy_nodes.NODE_CLASS_MAPPINGS["MultiGPU_WorkUnits"]), "max_gpus": 2}
    split.pop("model", None)
    prompt = {
        "1": dict(SOURCE),
        "10": {"class_type": "VCUTTestRecordRows", "inputs": {"model": ["1", 0]}},
        "11": {"class_type": "VCUTCutStepScheduler", "inputs": {"model": ["10", 0], "cut_step": 3, "cut_fraction": 0.0,
                                                             "after_cut": "drop", "auto_threshold": 0.0}},
        "12": {"class_type": "MultiGPU_WorkUnits", "inputs": {"model": ["11", 0], **split}},
        "2": harness.ksampler_node(["12", 0], ["1", 1], ["1", 2], ["1", 3]),
        "3": {"class_type": "VCUTTestCapture", "inputs": {"value": ["2", 0], "key": "latent"}},
    }
    out = harness.run_prompt(prompt)
    assert torch.isfinite(out["latent"]["samples"]).all()
    assert [rows // FRAMES for rows, _ in calls[-1]] == [2, 2, 1, 1]


def two_cuts_prompt(cut_a, cut_b):
    """One model, two Cut Step Scheduler clones of it with different cuts, two KSamplers in one prompt."""
    prompt = {"1": dict(SOURCE)}
    for tag, cut_step in (("a", cut_a), ("b", cut_b)):
        prompt[f"c{tag}"] = {"class_type": "VCUTCutStepScheduler", "inputs": {
            "model": ["1", 0], "cut_step": cut_step, "cut_fraction": 0.0, "after_cut": "drop", "auto_threshold": 0.0}}
        prompt[f"r{tag}"] = {"class_type": "VCUTTestRecordRowsAs", "inputs": {"model": [f"c{tag}", 0], "key": tag}}
        prompt[f"k{tag}"] = harness.ksampler_node([f"r{tag}", 0], ["1", 1], ["1", 2], ["1", 3], steps=5)
        prompt[f"o{tag}"] = {"class_type": "VCUTTestCapture", "inputs": {"value": [f"k{tag}", 0], "key": tag}}
    return prompt


ROWS: dict[str, list] = {}


class RecordRowsAs:
    """Test-only node: a clone whose UNet calls are recorded under `key`."""
    FUNCTION = "record"
    RETURN_TYPES = ("MODEL",)
    CATEGORY = "testing"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "key": ("STRING", {"default": "a"})}}

    def record(self, model, key):
        recorded, calls = harness.record_unet_calls(model)
        ROWS[key] = calls
        return (recorded,)


def test_two_clones_with_different_cuts_keep_their_own_rows_in_one_prompt_and_across_prompts(comfy_nodes):
    """The per-run state lives in each run's transformer_options; the wrappers, which every clone of the model
    shares (deepcopy_list_dict copies dicts and lists only), hold none."""
    comfy_nodes.NODE_CLASS_MAPPINGS["VCUTTestRecordRowsAs"] = RecordRowsAs
    expected = {2: [2, 1, 1, 1, 1], 3: [2, 2, 1, 1, 1], 4: [2, 2, 2, 1, 1], 9: [2] * 5}
    ROWS.clear()
    harness.run_prompt(two_cuts_prompt(3, 2))
    assert [r // FRAMES for r, _ in ROWS["a"]] == expected[3]
    assert [r // FRAMES for r, _ in ROWS["b"]] == expected[2]
    session = harness.Session()
    for cut_a, cut_b in ((4, 9), (2, 3)):
        ROWS.clear()
        out = session.run(two_cuts_prompt(cut_a, cut_b))
        assert [r // FRAMES for r, _ in ROWS["a"]] == expected[cut_a], (cut_a, cut_b)
        assert [r // FRAMES for r, _ in ROWS["b"]] == expected[cut_b], (cut_a, cut_b)
        assert not torch.equal(out["a"]["samples"], out["b"]["samples"])


def test_easycache_handoff_names_the_fields_this_easycache_lacks(comfy_nodes, caplog):
    """The handoff writes core EasyCache's private fields: where one is missing (a changed EasyCache) the log says
    which, instead of the cut silently leaving EasyCache on the branch that no longer runs."""
    from comfy_extras.nodes_easycache import EasyCacheHolder, LazyCacheHolder
    follow = harness.pack_module().nodes.cut_patch.follow_positive_with_easycache
    positive = [{"uuid": "positive-uuid"}]

    def holder(*absent):
        easycache = EasyCacheHolder(0.2, 0.15, 0.95, subsample_factor=8, offload_cache_diff=False)
        easycache.first_cond_uuid = "negative-uuid"
        for name in absent:
            delattr(easycache, name)
        return easycache
    with caplog.at_level(logging.INFO, logger="vcut"):
        complete = holder()
        follow({"transformer_options": {"easycache": complete}}, positive)
        assert complete.first_cond_uuid == "positive-uuid" and "has no" not in caplog.text
        caplog.clear()
        follow({"transformer_options": {"easycache": holder("output_prev_norm")}}, positive)
        assert "has no output_prev_norm" in caplog.text and "EasyCache now follows" in caplog.text
        caplog.clear()
        follow({"transformer_options": {"easycache": holder("first_cond_uuid")}}, positive)
        assert "has no first_cond_uuid" in caplog.text and "may skip no step after the cut" in caplog.text
        caplog.clear()
        follow({"transformer_options": {"easycache": LazyCacheHolder(0.2, 0.15, 0.95, 8, False)}}, positive)
        assert caplog.text == ""  # LazyCache works on the guider's prediction: nothing to hand over
