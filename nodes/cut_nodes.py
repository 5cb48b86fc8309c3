"""VCUT Patch Model and Cut Step Scheduler: ComfyUI glue around cut/ (object patches; the cut's sampler wrappers are
cut_patch.py)."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from comfy.model_patcher import ModelPatcher
from comfy.patcher_extension import WrappersMP
from comfy_api.latest import io

from ..cut.attention import MODES, VCUT_MODULES, original_of, plan_patch
from ..cut.schedule import AFTER_CUT
from .checks import require_svd
from .comfy_compat import schema_extras
from .cut_patch import CutConfig, cut_step_calc_cond_batch
from .log import log
from .patch_layer import ATTENTION_REPORT, CUT_STEP, ModelPatch
from .run import FeatureConfig, FeatureState, SamplingRun


def attn2_replaced_blocks(model_options: dict) -> list:
    """Blocks for which another node set an attn2 replace patch (set_model_attn2_replace): ComfyUI's transformer
    block then calls attn2.to_q / to_k / to_v / to_out itself, so those blocks run the real attention."""
    return sorted(model_options.get("transformer_options", {}).get("patches_replace", {}).get("attn2", {}), key=str)


@dataclasses.dataclass(frozen=True)
class VcutConfig(FeatureConfig):
    """VCUT Patch Model's settings as the run layer reads them: the mode and how many cross-attentions are VCUT's."""
    name: ClassVar[str] = "VCUT Patch Model"
    mode: str
    vectors: int

    def new_state(self, run: SamplingRun) -> FeatureState:
        blocks = attn2_replaced_blocks(getattr(run.guider, "model_options", {}) or {})
        if blocks:
            log.info("VCUT Patch Model: %d block(s) have another node's attn2 replace patch and run the real "
                     "cross-attention there: %s", len(blocks), ", ".join(map(str, blocks)))
        patches = getattr(run.guider.model_patcher, "object_patches", {})
        return VcutState(self, len(blocks), [m for m in patches.values() if isinstance(m, VCUT_MODULES)])


class VcutState(FeatureState):
    def __init__(self, config: VcutConfig, replaced: int, modules: list) -> None:
        self.config, self.replaced, self.modules = config, replaced, modules
        for module in modules:
            module.saved_macs = 0  # what another model's run left

    def saved_macs(self) -> int:
        return sum(module.saved_macs for module in self.modules)

    def report(self) -> str:
        text = f"VCUT Patch Model ({self.config.mode}): {self.config.vectors} cross-attentions as one vector per image"
        if self.replaced:
            text += f", {self.replaced} block(s) with another node's attn2 patch run the real cross-attention"
        return text


class VCUTPatchModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTPatchModel",
            display_name="VCUT Patch Model",
            category="vcut/speed",
            **schema_extras(io.Schema, search_aliases=["vcut", "svd speed up", "faster svd", "cross attention cache"]),
            description=(
                "Training-free VCUT speed-up for SVD / SVD-XT / SVD-XT 1.1. SVD's cross-attention attends to a single "
                "token (the CLIP image embedding), so its output is the same vector for every pixel: it is computed "
                "once per model call for each image and broadcast, skipping to_q, to_k and the attention product. "
                "'exact' is the same computation as the unpatched model; 'paper' also removes temporal "
                "cross-attention as the VCUT paper does. Patches a copy of the model (same parameter keys, so LoRAs, "
                "merges and Save Model work as before); the input model is untouched."),
            inputs=[
                io.Model.Input("model", tooltip="An SVD image-to-video model (ImageOnlyCheckpointLoader)."),
                io.Combo.Input("mode", options=list(MODES), default="exact",
                               tooltip="exact: the same computation as the unpatched model (same video up to float "
                                       "rounding), one-token spatial and temporal cross-attention. paper: the VCUT "
                                       "paper's model, temporal cross-attention removed (slightly different video, "
                                       "fewer parameters read)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with VCUT cross-attention.")],
        )

    @classmethod
    def execute(cls, model: ModelPatcher, mode: str) -> io.NodeOutput:
        require_svd(model)
        patched = ModelPatch(model)

        def in_effect(name: str, live_module: Any) -> Any:
            """The attn2 in effect for THIS model: its own object patch, else the unpatched module. The live
            module tree can hold another clone's VCUT modules (ComfyUI keeps the last sampled model patched)."""
            key = f"diffusion_model.{name}"
            if key in model.object_patches:
                return model.object_patches[key]
            return original_of(model.get_model_object(key))
        plan = plan_patch(model.model.diffusion_model, mode, resolve=in_effect)
        for name, module in plan.replacements.items():
            patched.set_object_patch(f"diffusion_model.{name}", module)
        patched.set_feature(ATTENTION_REPORT, VcutConfig(mode, len(plan.replacements) + plan.already_patched))
        log.info("VCUT Patch Model (%s): %s", mode, plan.summary())
        blocks = attn2_replaced_blocks(model.model_options)
        if blocks:
            log.info("VCUT Patch Model: blocks with another node's attn2 replace patch run the real cross-attention: "
                     "%s", ", ".join(map(str, blocks)))
        return io.NodeOutput(patched.patcher)


class VCUTCutStepScheduler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="VCUTCutStepScheduler",
            display_name="Cut Step Scheduler",
            category="vcut/speed",
            **schema_extras(io.Schema, search_aliases=["cfg cut", "guidance schedule", "vcut cut"]),
            description=(
                "VCUT's guidance cut: classifier-free guidance only in the first steps (the semantic-binding stage). "
                "Steps 1..c-1 run the conditional and unconditional branches; from step c on the unconditional branch "
                "is not computed at all and the prediction is the conditional one (as cfg 1), halving the UNet work "
                "of those steps. Steps are counted on the sampler's sigma schedule, so second-order samplers and "
                "denoise < 1 work. Works with KSampler, KSamplerAdvanced, SamplerCustom(Advanced) and behind "
                "VideoLinearCFGGuidance / VideoTriangleCFGGuidance. Any model; made for SVD."),
            inputs=[
                io.Model.Input("model", tooltip="The model to sample with (SVD, optionally after VCUT Patch Model)."),
                io.Int.Input("cut_step", default=17, min=1, max=10000,
                             tooltip="c: steps 1..c-1 use guidance, steps c..N do not (steps numbered from 1 on the "
                                     "schedule the sampler runs). 17 of 25 = 16 guided + 9 unguided steps, the paper's "
                                     "setting. 1 = no guidance at all; larger than the step count = nothing cut."),
                io.Float.Input("cut_fraction", default=0.0, min=0.0, max=1.0, step=0.01,
                               tooltip="0 = use cut_step. Otherwise the fraction of the steps that keep guidance: "
                                       "c = round(fraction x steps) + 1, e.g. 0.64 of 25 steps gives c = 17."),
                io.Combo.Input("after_cut", options=list(AFTER_CUT), default="drop",
                               tooltip="drop: after the cut the prediction is the conditional one (the paper). "
                                       "reuse_delta: keep applying the last measured guidance (cond - uncond) "
                                       "scaled by cfg, at no extra UNet cost."),
                io.Float.Input("auto_threshold", default=0.0, min=0.0, max=1.0, step=0.005,
                               tooltip="0 = off. Otherwise also cut as soon as the relative difference between the "
                                       "conditional and unconditional predictions, |cond-uncond|/|cond|, falls below "
                                       "this value (measured from step 2 on)."),
            ],
            outputs=[io.Model.Output(tooltip="The model with the guidance cut.")],
        )

    @classmethod
    def execute(cls, model: ModelPatcher, cut_step: int, cut_fraction: float, after_cut: str,
                auto_threshold: float) -> io.NodeOutput:
        config = CutConfig(cut_step, cut_fraction, after_cut, auto_threshold)
        patched = ModelPatch(model)
        patched.set_feature(CUT_STEP, config, {WrappersMP.CALC_COND_BATCH: cut_step_calc_cond_batch})
        return io.NodeOutput(patched.patcher)


NODES = [VCUTPatchModel, VCUTCutStepScheduler]
