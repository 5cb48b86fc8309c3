"""The sampling-run layer: what every pack feature that acts while ComfyUI samples shares (as diffusers' hooks share
one registry). Each feature has the same shape:
- a Config: a frozen dataclass attached to the clone (patch_layer.ModelPatch.set_feature), readable by any node
  with `feature_config(model, key)`;
- a State: made by `config.new_state(run)` once per sampling run, kept in the run and dropped in a `finally`;
- its wrappers (patch_layer.py attaches them), which find their state with `current_run(transformer_options)`.

The layer's own wrappers make and end the run:
- OUTER_SAMPLE (`run_outer_sample`): one SamplingRun per sampling run in a copy of the guider's model_options
  (never on a wrapper, which every clone of the model shares), one state per attached config, each state's
  `finish` on the sampled latent, and at the end ONE report (log line + the sampler node's progress text);
- PREDICT_NOISE (`run_predict_noise`): the step of each model evaluation, counted once per evaluation (core context
  windows call calc_cond_batch once per window; Heun visits a sigma twice), read by every feature;
- DIFFUSION_MODEL (`run_diffusion_model`): rows and MACs of every UNet call, for the report (the run's MACs vs the
  unpatched run's: every call full, guided, with the original cross-attention).

Keys: anything a feature keeps across model calls is keyed by `CallKey` (conditioning x core context window x
MultiGPU device). A call whose rows do not match what the layer knows of the run (a split it does not know) gets
no keys: the feature steps aside for that call and the run's report says so.
"""
from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import comfy.model_patcher
import torch
from comfy.patcher_extension import WrapperExecutor

from ..cut.accounting import count_macs
from ..cut.schedule import StepCounter
from . import comfy_compat
from .log import log

if TYPE_CHECKING:
    from comfy.model_patcher import ModelPatcher

RUN_OPTION = "vcut_run"
CALL_MARKS = "vcut_call"  # per UNet call: what the features inside did with it ({"kind": "partial"})
# ComfyUI samplers whose second model call of a step is at the step's end sigma (the next step's start).
STEP_END_SAMPLERS = {"sample_heun", "sample_heunpp2"}


class FeatureState:
    """One feature's state in one sampling run. `reset` empties what it keeps; `finish` may change the sampled
    latent; `report` is the feature's part of the run's report (None: it did nothing worth saying)."""

    def reset(self) -> None:
        """Forget everything kept across model calls."""

    def finish(self, latent: torch.Tensor) -> torch.Tensor:
        return latent

    def report(self) -> str | None:
        return None

    def saved_macs(self) -> int:
        """MACs the feature saved inside the UNet call just run (VCUT's replacements: the original attention's less
        theirs), added to the run's unpatched reference."""
        return 0


class FeatureConfig:
    """Base of every feature's frozen settings dataclass: `name` for the log, `new_state` for a run."""
    name: ClassVar[str] = "feature"

    def new_state(self, run: SamplingRun) -> FeatureState | None:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class CallKey:
    """What tells apart the pieces ComfyUI splits a model evaluation into: the conditioning (its uuid, else
    cond_or_uncond), the core context window (its frame indices, None without windows) and the MultiGPU device
    (ComfyUI 0.30+ CFG split; None on one device)."""
    conditioning: Any
    window: tuple[int, ...] | None = None
    device: str | None = None


def window_of(transformer_options: dict) -> tuple[int, ...] | None:
    """The core context window a call covers (its frame indices), None outside context windows."""
    window = transformer_options.get("context_window")
    return tuple(window.index_list) if window is not None and hasattr(window, "index_list") else None


def device_of(transformer_options: dict) -> str | None:
    device = transformer_options.get("multigpu_thread_device")
    return None if device is None else str(device)


class RunCost:
    """MACs per row of each kind of UNet call (counted on the first call of the kind with FlopCounterMode, as the
    benchmarks count them) and rows per kind; a UNet call's MACs are proportional to its rows. The unpatched
    reference: a full call's MACs plus what the features saved inside it (VCUT), for every row the run computed or
    the cut dropped."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.per_row: dict[str, int] = {}
        self.rows: dict[str, int] = {}
        self.unpatched_per_row = 0

    @torch.compiler.disable
    def add(self, kind: str, rows: int, macs: int | None = None, saved: int = 0) -> None:
        self.rows[kind] = self.rows.get(kind, 0) + rows
        if macs is not None and kind not in self.per_row:
            self.per_row[kind] = macs // max(rows, 1)
            if kind == "full":
                self.unpatched_per_row = (macs + saved) // max(rows, 1)

    def macs(self) -> int:
        return sum(self.per_row.get(k, 0) * r for k, r in self.rows.items())


class SamplingRun:
    """One sampling run: the step tracker, one state per feature, the call keys and the cost."""

    def __init__(self, guider: Any, noise: torch.Tensor, latent: torch.Tensor, sigmas: torch.Tensor,
                 evaluates_step_end: bool) -> None:
        # latent: the sampler's latent_image as the guider got it (before process_latent_in)
        self.guider, self.noise, self.latent, self.sigmas = guider, noise, latent, sigmas
        self.counter = StepCounter(sigmas, evaluates_step_end)
        self.total_steps = self.counter.total_steps
        self.step: int | None = None
        self.batch = int(noise.shape[0])  # rows of one conditioning in a call that sees the whole latent (SVD: frames)
        self.states: dict[str, list[FeatureState]] = {}
        self.cost = RunCost()
        self.kinds = {"full"}  # kinds of UNet call this run can make (a feature may add "partial")
        self.dropped_rows = 0  # rows a feature did not compute that an unpatched run would (the cut's)
        self.stepped_aside: dict[str, int] = {}

    def step_at(self, sigma: torch.Tensor | None) -> int:
        """The step of the model evaluation in progress (read off the call's sigma where no evaluation set it,
        e.g. a guider that calls the model outside predict_noise)."""
        if self.step is None:
            return self.counter.step_of(float(sigma.max())) if sigma is not None else 1
        return self.step

    def state(self, key: str) -> FeatureState | None:
        states = self.states.get(key)
        return states[0] if states else None

    def call_keys(self, transformer_options: dict, rows: int, feature: str) -> list[CallKey] | None:
        """One CallKey per conditioning chunk of a UNet call (its rows split evenly in that order), or None when the
        layer cannot tell the call's pieces apart: the feature then steps aside for this call."""
        chunks = transformer_options.get("uuids") or transformer_options.get("cond_or_uncond")
        if not chunks or rows % len(chunks) or len(set(chunks)) != len(chunks):
            return self.step_aside(feature, "batch chunks not told apart")
        part = self.part_key(transformer_options, rows // len(chunks), feature)
        if part is None:
            return None
        return [CallKey(c, part.window, part.device) for c in chunks]

    def part_key(self, transformer_options: dict, rows: int, feature: str) -> CallKey | None:
        """The CallKey of a call's part of the latent (conditioning None) for `rows` rows of one conditioning, or
        None when those rows are not the whole latent or a core context window of it (an unknown split)."""
        window = window_of(transformer_options)
        expected = self.batch
        context = transformer_options.get("context_window")
        if window is not None and getattr(context, "dim", 0) == 0:
            expected = len(window)
        if rows != expected:
            where = f"context window of {len(window)} frames" if window is not None else f"latent of {self.batch}"
            return self.step_aside(feature, f"a model call split in a way the pack does not know ({rows} rows per "
                                            f"conditioning for a {where})")
        return CallKey(None, window, device_of(transformer_options))

    def step_aside(self, feature: str, reason: str) -> None:
        text = f"{feature}: {reason}"
        if text not in self.stepped_aside:
            log.warning("%s: stepped aside for this model call (nothing kept is reused)", text)
        self.stepped_aside[text] = self.stepped_aside.get(text, 0) + 1
        return None

    def report(self) -> str:
        parts = [text for states in self.states.values() for s in states if (text := s.report())]
        parts += [f"{text}: stepped aside {n}x" for text, n in self.stepped_aside.items()]
        spent = self.cost.macs()
        unpatched = self.cost.unpatched_per_row * (sum(self.cost.rows.values()) + self.dropped_rows)
        if spent and unpatched:
            parts.append(f"{spent / 1e9:.3g} GMACs vs {unpatched / 1e9:.3g} unpatched = {spent / unpatched:.2f}x")
        parts.append(f"{time.perf_counter() - self.cost.started:.1f} s")
        return "; ".join(parts)


def current_run(transformer_options: dict | None) -> SamplingRun | None:
    return transformer_options.get(RUN_OPTION) if isinstance(transformer_options, dict) else None


def feature_config(model: ModelPatcher, key: str) -> Any:
    """The feature `key`'s config on this model (a frozen dataclass, or a tuple of them for a stacking feature),
    None when the feature is not attached."""
    return model.get_attachment(key)


def feature_configs(model: ModelPatcher) -> list[tuple[str, FeatureConfig]]:
    """Every feature attached to the model (key, config), in the order the nodes attached them: any attachment
    that is a FeatureConfig (or a tuple of them), so a new feature needs no list of keys here."""
    out = []
    for key, config in model.attachments.items():
        for c in config if isinstance(config, tuple) else (config,):
            if isinstance(c, FeatureConfig):
                out.append((key, c))
    return out


def run_outer_sample(executor: WrapperExecutor, noise: torch.Tensor, latent_image: torch.Tensor, sampler: Any,
                     sigmas: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The layer's OUTER_SAMPLE wrapper: one SamplingRun over every feature attached to the guider's model."""
    guider = executor.class_obj
    configs = feature_configs(guider.model_patcher)
    if not configs:
        return executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
    step_end = getattr(getattr(sampler, "sampler_function", None), "__name__", "") in STEP_END_SAMPLERS
    run = SamplingRun(guider, noise, latent_image, sigmas, step_end)
    for key, config in configs:
        state = config.new_state(run)
        if state is not None:
            run.states.setdefault(key, []).append(state)
    original = guider.model_options
    guider.model_options = comfy.model_patcher.create_model_options_clone(original)
    guider.model_options.setdefault("transformer_options", {})[RUN_OPTION] = run
    try:
        out = executor(noise, latent_image, sampler, sigmas, *args, **kwargs)
        for states in run.states.values():
            for state in states:
                out = state.finish(out)
        return out
    finally:
        guider.model_options = original
        for states in run.states.values():
            for state in states:
                state.reset()
        report("VCUT run", run.report())


def run_predict_noise(executor: WrapperExecutor, x: torch.Tensor, timestep: torch.Tensor, *args: Any,
                      **kwargs: Any) -> torch.Tensor:
    """PREDICT_NOISE wrapper: the step of this model evaluation, once per evaluation, for every feature."""
    model_options = args[0] if args else kwargs.get("model_options", {})
    run = current_run(model_options.get("transformer_options", {}))
    if run is not None:
        run.step = run.counter.step_of(float(timestep.max()))
    return executor(x, timestep, *args, **kwargs)


def run_diffusion_model(executor: WrapperExecutor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """DIFFUSION_MODEL wrapper: rows of every UNet call and its MACs on the first call of each kind. The kind is
    what the features inside marked on the call ("full" unless the feature cache ran it partially)."""
    transformer_options = args[5] if len(args) > 5 else kwargs.get("transformer_options")
    run = current_run(transformer_options)
    if run is None:
        return executor(*args, **kwargs)
    rows = int(args[0].shape[0])
    marks: dict[str, str] = {}
    transformer_options[CALL_MARKS] = marks  # the feature cache writes the call's kind here
    if _all_measured(run):
        out = executor(*args, **kwargs)
        run.cost.add(marks.get("kind", "full"), rows)
        return out
    result = []
    macs = _count(lambda: result.append(executor(*args, **kwargs)))
    saved = sum(state.saved_macs() for states in run.states.values() for state in states)
    run.cost.add(marks.get("kind", "full"), rows, macs, saved)
    return result[0]


@torch.compiler.disable
def _all_measured(run: SamplingRun) -> bool:
    """Kept out of torch.compile's graphs (core TorchCompileModel compiles the UNet call): Python bookkeeping."""
    return run.kinds <= set(run.cost.per_row)


@torch.compiler.disable
def _count(call: Callable[[], None]) -> int:
    return count_macs(call).all_matmuls


def report(name: str, text: str) -> str:
    """Log `name: text` and show it on the executing (sampler) node where ComfyUI shows progress text
    (comfy_compat.show_progress_text)."""
    line = f"{name}: {text}"
    log.info(line)
    comfy_compat.show_progress_text(line)
    return line
