"""The pack's one patch layer: every key under which the pack attaches wrappers to a ModelPatcher, and the only code
in nodes/ that attaches or removes them or sets object patches (as AnimateDiff-Evolved's ModelPatcherHelper owns its
keys). It always works on a clone, so the node's input model, and every other clone of the session, is unchanged.

    patched = ModelPatch(model)                      # a clone (comfy_compat.clone)
    patched.set_wrappers(CUT_STEP, {WrappersMP.CALC_COND_BATCH: calc_cond_batch, ...})
    return io.NodeOutput(patched.patcher)

A feature of the sampling-run layer (run.py) is attached with set_feature: its frozen config as a patcher
attachment under its key, its wrappers under the same key, and the layer's own wrappers (under RUN) once. The
wrappers keep no per-run state themselves (every clone shares them): each run's state lives in that run's
transformer_options, made by the layer's OUTER_SAMPLE wrapper and removed in its `finally`.
"""
from __future__ import annotations

from typing import Any, Callable

from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrappersMP

from . import comfy_compat, run

# One key per feature, in the pack's namespace ("vcut..."; a new feature may name its key in its own module). A node
# replaces what an earlier node of the same feature attached under its key (set_wrappers) or stacks another set
# beside it (add_wrappers); other nodes' and ComfyUI's own wrappers are never touched.
ATTENTION_REPORT = "vcut"  # VCUT Patch Model: its vectors in the run's report
CUT_STEP = "vcut_cut_step"  # Cut Step Scheduler
FEATURE_CACHE = "vcut_feature_cache"  # UNet Feature Cache
FRAME_REPLACE = "vcut_frame_replace"  # STIV Frame Replace (stacks: two nodes anchor both sets of frames)
LOOP_ANCHOR = "vcut_loop_anchor"  # Loop Conditioning
VIDEO_EXTEND = "vcut_video_extend"  # Video Extend (a chained one anchors to its own previous segment only)
RUN = "vcut_run"  # the sampling-run layer's own wrappers (run.py): one run, one step, one report for every feature

# The wrapper types the pack uses (all in ComfyUI 0.8.0 and later, patcher_extension.WrappersMP).
WRAPPER_TYPES = (WrappersMP.OUTER_SAMPLE, WrappersMP.SAMPLER_SAMPLE, WrappersMP.PREDICT_NOISE,
                 WrappersMP.CALC_COND_BATCH, WrappersMP.APPLY_MODEL, WrappersMP.DIFFUSION_MODEL)

Wrappers = dict[str, Callable[..., Any]]  # wrapper type (WrappersMP.*) -> wrapper


class ModelPatch:
    """A clone of a ModelPatcher (`.patcher`) and the pack's patches on it."""

    def __init__(self, model: ModelPatcher) -> None:
        self.patcher = comfy_compat.clone(model)

    def set_wrappers(self, key: str, wrappers: Wrappers) -> None:
        """The feature `key`'s wrappers become exactly these (what an earlier node of that feature attached goes)."""
        self.remove_wrappers(key)
        self.add_wrappers(key, wrappers)

    def add_wrappers(self, key: str, wrappers: Wrappers) -> None:
        """Attach these beside whatever `key` already has (they run nested, the last added outermost)."""
        _check_key(key)
        for wrapper_type, wrapper in wrappers.items():
            if wrapper_type not in WRAPPER_TYPES:
                raise ValueError(f"the pack does not use the wrapper type {wrapper_type!r} (add it to WRAPPER_TYPES)")
            self.patcher.add_wrapper_with_key(wrapper_type, key, wrapper)

    def remove_wrappers(self, key: str) -> None:
        """Drop every wrapper the feature `key` attached to this clone, of every type the pack uses."""
        _check_key(key)
        for wrapper_type in WRAPPER_TYPES:
            self.patcher.remove_wrappers_with_key(wrapper_type, key)

    def set_feature(self, key: str, config: run.FeatureConfig | tuple[run.FeatureConfig, ...] | None,
                    wrappers: Wrappers | None = None) -> None:
        """The feature `key` becomes exactly `config` (a frozen dataclass, or a tuple of them for a feature that
        stacks) and `wrappers`; None removes it. The run layer's wrappers are attached once, before any feature's
        first wrapper, so they run outside them."""
        self.remove_wrappers(key)
        self.patcher.remove_attachments(key)
        if config is None:
            return
        if not self.patcher.get_wrappers(WrappersMP.OUTER_SAMPLE, RUN):
            self.add_wrappers(RUN, LAYER_WRAPPERS)
        self.patcher.set_attachments(key, config)
        self.add_wrappers(key, wrappers or {})

    def set_object_patch(self, name: str, module: Any) -> None:
        """Swap the module at `name` ("diffusion_model.<path>") for `module` while this clone is sampled; ComfyUI
        puts the original back when the model is unpatched, so the module tree keeps its parameter keys."""
        self.patcher.add_object_patch(name, module)


LAYER_WRAPPERS: Wrappers = {WrappersMP.OUTER_SAMPLE: run.run_outer_sample,
                             WrappersMP.PREDICT_NOISE: run.run_predict_noise,
                             WrappersMP.DIFFUSION_MODEL: run.run_diffusion_model}


def _check_key(key: str) -> None:
    if not key.startswith(ATTENTION_REPORT):
        raise ValueError(f"{key!r} is not a key of the pack's namespace (keys start with {ATTENTION_REPORT!r})")
