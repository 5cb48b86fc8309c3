"""The pack on ComfyUI's dynamic-VRAM patcher (ModelPatcherDynamic, ComfyUI 0.30.0 and later), run on the CPU.

What this is, honestly: real upstream code in a setup upstream never runs. ComfyUI enables dynamic VRAM only on
NVIDIA (and newer: AMD) GPUs, where comfy-aimdo streams weights through a virtual VRAM buffer; on a CPU device
`ModelPatcherDynamic.__new__` hands back the plain ModelPatcher, and comfy-aimdo has no CPU path. The fixture below
bypasses that one reroute and turns dynamic VRAM on as main.py does on a GPU, so that the Python side of the dynamic
patcher runs with the pack on it. The GPU benchmark (bench/gpu_bench.py, BENCHMARKS.md) is still the proof on a GPU.

What runs as upstream wrote it: comfy-aimdo's library loaded by `comfy_aimdo.control.init()` (main.py's first step;
its host buffers do allocate on the CPU), `comfy.memory_management.aimdo_enabled` and `CoreModelPatcher =
ModelPatcherDynamic` (main.py's last step); the model built as comfy.sd builds it under dynamic VRAM (on
`unet_inital_load_device`, its comfy.ops layers created without weights, then `load_model_weights(..., assign=True)`
on a CoreModelPatcher); every load through `load_models_gpu` -> `ModelPatcherDynamic.partially_load` -> `load`
(object patches applied, backups restored by attribute path, weights and buffers cast and set by path, the host
buffers of its pin state created); the pack's clones (`clone()` keeps the class), object patches and wrappers;
ComfyUI's own KSampler path.

What does not run on the CPU, even so: comfy-aimdo's device side. `ModelPatcherDynamic._vbar_get` returns no VBAR for
a CPU device (upstream's own branch), so no layer gets a VBAR allocation (`_v`) and every comfy.ops layer takes the
plain cast path: weights are not streamed, nothing is pinned, and a weight patch (LoRA) on a large layer would be a
`*_lowvram_function` that only the VBAR path applies (the pack's features add none; this file uses none).
`comfy_aimdo.control.init_devices` (which needs a GPU) is not called. Nothing is unloaded: ModelPatcherDynamic's
`partially_unload` asserts a non-CPU device, so the fixture takes its models out of ComfyUI's loaded list as
`load_models_gpu` drops a replaced clone (`detach(unpatch_all=False)`), and restores every attribute it set.

ComfyUI's model detection has no entry for a shrunk SVD, so the config is the harness's tiny SVD_img2vid; its weights
are the seeded weights of harness.tiny_svd(), and the same pack graphs on a plain ModelPatcher are the references.
SVD's attn2 modules hold no buffer of their own, so every attn2 gets one (as quantised or custom attention layers
carry): stored in fp16 with a model dtype of fp32, as a checkpoint in another dtype is, so that each load casts it
and sets a new tensor by attribute path, the CPU-visible form of what a GPU device move does (upstream #16490).
"""
import gc
import importlib
import logging
from contextlib import contextmanager

import harness
import pytest
import torch
from harness import rel_err_max as rel_err

FRAMES, STEPS, SEED = 3, 3, 0
CPU = torch.device("cpu")
PROBE = "vcut_probe"  # the buffer every attn2 of the dynamic model gets
SEQUENCE = ["base", "stack", "base", "stack", "exact"]


def dynamic_patcher_class():
    """ModelPatcherDynamic, or a skip that says what this ComfyUI lacks (it came with dynamic VRAM)."""
    harness.init_comfy()
    import comfy.model_patcher
    if not hasattr(comfy.model_patcher, "ModelPatcherDynamic"):
        pytest.skip("this ComfyUI has no comfy.model_patcher.ModelPatcherDynamic (no dynamic VRAM)")
    import comfy.memory_management  # 0.8.0 has no such module; every ComfyUI with ModelPatcherDynamic has
    if not hasattr(comfy.memory_management, "aimdo_enabled"):
        pytest.skip("this ComfyUI has no comfy.memory_management.aimdo_enabled switch")
    return comfy.model_patcher.ModelPatcherDynamic


def patched(nodes, model, kind):
    """The graphs compared: the model as loaded, VCUT exact alone, and VCUT exact -> Cut Step Scheduler (cut at step 2,
    reuse_delta) -> UNet Feature Cache (interval 2): object patches plus the pack's sampler wrappers."""
    if kind == "base":
        return model
    model = nodes.NODE_CLASS_MAPPINGS["VCUTPatchModel"].execute(model, "exact").result[0]
    if kind == "exact":
        return model
    model = nodes.NODE_CLASS_MAPPINGS["VCUTCutStepScheduler"].execute(model, 2, 0.0, "reuse_delta", 0.0).result[0]
    return nodes.NODE_CLASS_MAPPINGS["VCUTFeatureCache"].execute(model, 2, 0, "uniform", 0.0, 1.0).result[0]


@contextmanager
def dynamic_vram():
    """Dynamic VRAM on, as main.py turns it on, with the CPU reroute of ModelPatcherDynamic bypassed; on exit the
    fixture's models leave ComfyUI's loaded list without an unload and every changed attribute is restored."""
    dynamic = dynamic_patcher_class()
    import comfy.memory_management
    import comfy.model_management
    import comfy.model_patcher
    import comfy_aimdo.control
    import comfy_aimdo.host_buffer
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(comfy_aimdo.control, "lib", comfy_aimdo.control.lib)
        if not comfy_aimdo.control.init():
            pytest.skip("comfy-aimdo's library does not load on this platform")
        host_buffer = dict(vars(comfy_aimdo.host_buffer))
        # main.py loads the library before anything imports comfy; here comfy came first and host_buffer bound no
        # library: its import runs again, now binding it (its own ctypes declarations)
        importlib.reload(comfy_aimdo.host_buffer)
        mp.setattr(comfy.memory_management, "aimdo_enabled", True)
        mp.setattr(comfy.model_patcher, "CoreModelPatcher", dynamic)
        mp.setattr(dynamic, "__new__", staticmethod(lambda cls, *args, **kwargs: object.__new__(cls)))
        loaded = comfy.model_management.current_loaded_models
        try:
            yield dynamic
        finally:
            for entry in [m for m in loaded if m.model is not None and m.model.is_dynamic()]:
                loaded.remove(entry)
                entry.model.detach(unpatch_all=False)
                if entry.model_finalizer is not None:
                    entry.model_finalizer.detach()
            gc.collect()  # models let go by the caller free comfy-aimdo's host buffers while its library is bound
            vars(comfy_aimdo.host_buffer).clear()
            vars(comfy_aimdo.host_buffer).update(host_buffer)


def load_dynamic(weights):
    """The tiny SVD built and loaded as comfy.sd loads a checkpoint under dynamic VRAM, plus a probe buffer on every
    attn2 (fp16 in the 'checkpoint', fp32 the model dtype: each load casts it and sets it by attribute path)."""
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models
    config = comfy.supported_models.SVD_img2vid(dict(harness.TINY_SVD_CONFIG))
    model = config.get_model({}, "", device=comfy.model_management.unet_inital_load_device(1, torch.float32))
    patcher = comfy.model_patcher.CoreModelPatcher(model, load_device=CPU,
                                                   offload_device=comfy.model_management.unet_offload_device())
    checkpoint = {f"diffusion_model.{key}": value.clone() for key, value in weights.items()}
    generator = torch.Generator().manual_seed(SEED)
    for name, module in model.diffusion_model.named_modules():
        if name.endswith("attn2"):
            module.register_buffer(PROBE, torch.zeros(8))
            setattr(module, f"{PROBE}_comfy_model_dtype", torch.float32)  # what archive_model_dtypes records
            checkpoint[f"diffusion_model.{name}.{PROBE}"] = torch.randn(8, generator=generator).half()
    model.load_model_weights(checkpoint, "diffusion_model.", assign=patcher.is_dynamic())
    return patcher


def snapshot(patcher):
    """What the base model looks like in ComfyUI's hands: state_dict keys, every module under diffusion_model (the
    objects), every buffer (dtype and a copy of its values), and the own buffers of each attn2 that a live stand-in
    of the pack holds (the module its real-attention fallback runs)."""
    original_of = harness.pack_module().cut.attention.original_of
    model = patcher.model
    modules = dict(model.diffusion_model.named_modules())
    swapped = {name: original_of(module) for name, module in modules.items() if original_of(module) is not module}
    return {"keys": list(model.state_dict()), "modules": modules,
            "buffers": {name: (b.dtype, b.clone()) for name, b in model.named_buffers()},
            "swapped": {f"diffusion_model.{name}.{b}": (t.dtype, t.clone())
                        for name, module in swapped.items() for b, t in module.named_buffers(recurse=False)}}


class Reports(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.lines = []

    def emit(self, record):
        if record.getMessage().startswith("VCUT run: "):
            self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def runs(comfy_nodes):
    """The plain ModelPatcher references, then base -> stack -> base -> stack -> exact on ONE dynamic model (the pack
    nodes make new clones each time, as a server does on an edited graph), then the base loaded once more."""
    dynamic_patcher_class()
    import comfy.model_management
    conds = harness.svd_conds(frames=FRAMES, seed=SEED)
    plain = harness.tiny_svd(SEED)
    weights = plain.model.diffusion_model.state_dict()
    references = {kind: harness.sample(patched(comfy_nodes, plain, kind), *conds, steps=STEPS)
                  for kind in ("base", "stack", "exact")}
    out = {"references": references, "videos": [], "patchers": [], "loaded": [], "snapshots": [], "reports": []}
    log = logging.getLogger("vcut")
    reports, level = Reports(), log.level
    log.addHandler(reports)
    log.setLevel(logging.INFO)
    try:
        with dynamic_vram():
            base = load_dynamic(weights)
            out["before"] = snapshot(base)
            for kind in SEQUENCE:
                model = patched(comfy_nodes, base, kind)
                reports.lines.clear()
                out["videos"].append(harness.sample(model, *conds, steps=STEPS))
                out["reports"].append(list(reports.lines))
                out["patchers"].append(model)
                out["loaded"].append([(type(m.model), m.model.model) for m in comfy.model_management.current_loaded_models
                                      if m.model is not None and m.model.model is base.model])
                out["snapshots"].append(snapshot(base))
            comfy.model_management.load_models_gpu([base])  # the base model's own load, after the patched runs
            out["after"] = snapshot(base)
            out["pins"] = dict(base.model.dynamic_pins[CPU])
            out["base"] = base
            del model, base
            yield out
            out.clear()  # the dynamic models go before dynamic VRAM is turned off
    finally:
        log.removeHandler(reports)
        log.setLevel(level)


def test_the_model_and_the_pack_clones_are_model_patcher_dynamic_on_one_loaded_model(runs):
    dynamic = dynamic_patcher_class()
    base = runs["base"]
    assert type(base) is dynamic and base.load_device == CPU
    assert [type(p) for p in runs["patchers"]] == [dynamic] * len(SEQUENCE)  # clone() keeps the class
    for kind, patcher in zip(SEQUENCE, runs["patchers"], strict=True):
        assert (patcher is base) == (kind == "base")
    # each run's model is the one ComfyUI holds loaded afterwards, always the same BaseModel
    assert runs["loaded"] == [[(dynamic, base.model)]] * len(SEQUENCE)
    # ModelPatcherDynamic.load ran: its pin state is active with comfy-aimdo's host buffers, the layers cast themselves
    assert runs["pins"]["hostbufs_initialized"] and runs["pins"]["active"]
    cast = [m for m in base.model.diffusion_model.modules() if hasattr(m, "comfy_cast_weights")]
    assert cast and all(m.comfy_cast_weights for m in cast)


def test_base_and_patched_runs_repeat_bit_for_bit_and_equal_the_plain_patcher(runs):
    videos, references = runs["videos"], runs["references"]
    for kind, video in zip(SEQUENCE, videos, strict=True):
        assert torch.isfinite(video).all()
        assert torch.equal(video, references[kind]), kind
    assert torch.equal(videos[0], videos[2]) and torch.equal(videos[1], videos[3])


def test_the_stack_acts_and_exact_mode_equals_the_base_within_rounding(runs):
    base, stack, exact = runs["videos"][0], runs["videos"][1], runs["videos"][4]
    assert rel_err(stack, base) > 1e-3  # the cut drops the unconditional branch from step 2 on
    assert rel_err(exact, base) <= 5e-5  # VCUT exact: the same computation, to_out on 2 rows rounds differently
    assert [len(r) for r in runs["reports"]] == [0, 1, 0, 1, 1]
    for report in (runs["reports"][1][0], runs["reports"][3][0]):
        for name in ("VCUT Patch Model (exact)", "Cut Step Scheduler: ", "UNet Feature Cache: "):
            assert name in report, (name, report)
        assert "0 partial" not in report, report


def test_the_base_model_keeps_its_keys_modules_and_buffers_across_patched_runs(runs):
    original_of = harness.pack_module().cut.attention.original_of
    before = runs["snapshots"][0]  # the base model as ComfyUI loaded it first
    attn2 = {name for name in before["modules"] if name.endswith("attn2")}
    probes = {f"diffusion_model.{name}.{PROBE}" for name in attn2}
    assert attn2 and probes <= set(before["buffers"])
    assert before["keys"] == runs["before"]["keys"]
    for name, (dtype, _) in before["buffers"].items():
        if name in probes:
            assert dtype == torch.float32, name  # the load cast the fp16 'checkpoint' buffer and set it by path

    def same_buffers(snap):
        assert list(snap["buffers"]) == list(before["buffers"])
        for name, (dtype, value) in snap["buffers"].items():
            assert dtype == before["buffers"][name][0] and torch.equal(value, before["buffers"][name][1]), name

    for kind, snap in zip(SEQUENCE, runs["snapshots"], strict=True):
        assert snap["keys"] == before["keys"], kind  # a patched model has the unpatched model's keys
        same_buffers(snap)  # also the swapped attn2's: none lost, none left at the checkpoint's dtype
        assert len(snap["swapped"]) == (0 if kind == "base" else len(probes)), kind
        for name, (dtype, value) in snap["swapped"].items():  # the swapped-out module's own buffers are not stale
            assert dtype == before["buffers"][name][0] and torch.equal(value, before["buffers"][name][1]), name
        assert snap["modules"].keys() == before["modules"].keys(), kind
        for name, module in snap["modules"].items():
            if kind != "base" and name in attn2:
                assert module is not before["modules"][name], (kind, name)  # the pack's stand-in ...
                assert original_of(module) is before["modules"][name], (kind, name)  # ... for the base's attn2
            else:
                assert module is before["modules"][name], (kind, name)  # to_q / to_v / to_out shared, not copied
    after = runs["after"]  # the base loaded again after the patched runs
    assert after["keys"] == before["keys"]
    assert after["modules"].keys() == before["modules"].keys()
    assert all(after["modules"][name] is module for name, module in before["modules"].items())
    same_buffers(after)
