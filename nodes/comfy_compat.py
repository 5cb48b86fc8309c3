"""The one home of the ComfyUI internals the pack follows and of every difference between the ComfyUI releases it
runs on (0.8.0, the oldest supported; 0.30.0; the newest read, 0.38.1). Node modules and the runner call these
functions; no other module of the pack branches on the ComfyUI version. Each entry names the release that introduced
or changed what it uses, and tests/integration/test_comfy_compat.py checks each one on the running ComfyUI (the UNet
forward copy bit for bit against ComfyUI's own), so a ComfyUI that changed one of them is detected, not trusted.

Differences are handled by what the running ComfyUI has (a signature, an attribute, a module), never by its version
string. Imports of ComfyUI and torch are inside the functions: the runner loads this file by its path before it
imports ComfyUI (runner/local.py), and it has no relative imports for the same reason.

Node schema:       schema_fields, schema_extras            comfy_api.latest io.Schema fields
Model patcher:     clone                                   ModelPatcher.clone
UNet forward:      is_comfy_unet, unet_forward,            UNetModel._forward's layer sequence
                   unfollowed_patches, keep_output_block_input
Core EasyCache:    easycache_holder, easycache_missing,    comfy_extras/nodes_easycache.py's holder fields
                   easycache_follow
VAE decode:        vae_free_memory, vae_output_dtype       ModelPatcher.get_free_memory, VAE.vae_output_dtype
Progress text:     show_progress_text                      PromptServer.send_progress_text, get_executing_context
Runner start-up:   setup_logging, governance_initialize,   main.py's steps (app.logger, cli_args, app.governance,
                   load_extra_paths, hook_breaker,         utils.extra_config, hook_breaker_ac10a0,
                   partner_nodes_off, new_prompt_server,   server.PromptServer, execution.PromptExecutor,
                   new_prompt_executor, executing_node_id  comfy_execution.utils)
"""
from __future__ import annotations

import dataclasses
import inspect
import itertools
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import argparse
    import asyncio
    import pathlib
    import types

    import torch


# --- node schema -------------------------------------------------------------------------------------------------

def schema_fields(schema_class: type) -> set[str]:
    """The keyword arguments that `schema_class` (ComfyUI's io.Schema) accepts."""
    if dataclasses.is_dataclass(schema_class):
        return {f.name for f in dataclasses.fields(schema_class) if f.init}
    return set(inspect.signature(schema_class).parameters)


def schema_extras(schema_class: type, **fields: Any) -> dict:
    """The `fields` that this ComfyUI's io.Schema has (older versions would refuse the others). ComfyUI 0.8.0's
    io.Schema (a dataclass) has no `search_aliases` (other names the node search finds) and no
    `essentials_category` (the node's group in the frontend's Essentials tab); both were added after 0.8.0 (0.30.0
    and 0.38.1 have them):

        io.Schema(node_id=..., **schema_extras(io.Schema, search_aliases=["loop video"], essentials_category="..."))
    """
    known = schema_fields(schema_class)
    return {name: value for name, value in fields.items() if name in known}


# --- model patcher -----------------------------------------------------------------------------------------------

def clone(model: Any) -> Any:
    """A clone of a ModelPatcher that shares its weights and carries its wrappers, attachments and object patches.
    Called without arguments, which every release accepts: 0.8.0 `clone(self)`; 0.30.0 and 0.38.1
    `clone(self, disable_dynamic=False, model_override=None, force_deepcopy=False)` (dynamic VRAM and the MultiGPU
    clones call it with arguments; the pack never does)."""
    return model.clone()


def hook_weights(model_patcher: Any) -> tuple | None:
    """The hook keyframe weights in effect for the model call in progress, as (hook, strength) pairs; None without
    hooks. ComfyUI patches a conditioning's hooks into the weights before its calls: BaseModel.current_patcher (set
    while the model is patched) -> ModelPatcher.current_hooks, a HookGroup whose hooks carry their hook_ref and
    current keyframe strength (0.8.0 and later)."""
    patcher = getattr(model_patcher.model, "current_patcher", None)
    hooks = getattr(patcher, "current_hooks", None)
    return None if hooks is None else tuple((id(h.hook_ref), float(h.strength)) for h in hooks.hooks)


# --- UNet forward (the feature cache's full and partial steps) ---------------------------------------------------

# Patches of transformer_options["patches"] that act between the blocks, which unet_forward does not follow: a call
# that has them runs ComfyUI's own forward (the feature cache runs such a step fully). middle_block_after_patch was
# added after 0.8.0 (0.30.0 has it).
UNFOLLOWED_PATCHES = ("input_block_patch", "input_block_patch_after_skip", "middle_block_after_patch",
                      "output_block_patch")


class ShallowPath(NamedTuple):
    """A partial step (DeepCache Eq. 5): input blocks 0..branch, then `feature` as the h entering output block
    L-1-branch (kept from a full step with its `transformer_index` there), then the output blocks from there on."""
    branch: int
    feature: torch.Tensor
    transformer_index: int


def is_comfy_unet(unet: Any) -> bool:
    """True for ComfyUI's own UNetModel (comfy/ldm/modules/diffusionmodules/openaimodel.py, SVD's diffusion model in
    every release), the class whose forward unet_forward follows."""
    from comfy.ldm.modules.diffusionmodules import openaimodel
    return isinstance(unet, openaimodel.UNetModel)


def unfollowed_patches(transformer_options: dict) -> list[str]:
    """The patches of this call that unet_forward does not follow (UNFOLLOWED_PATCHES)."""
    patches = transformer_options.get("patches", {})
    return [name for name in UNFOLLOWED_PATCHES if patches.get(name)]


def unet_forward(unet: Any, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None,
                 y: torch.Tensor | None, transformer_options: dict, kwargs: dict[str, Any],
                 shallow: ShallowPath | None = None) -> torch.Tensor:
    """ComfyUI's private UNetModel._forward, the one place the pack follows it: the same layer sequence through
    ComfyUI's own blocks and `forward_timestep_embed` (so emb_patch, forward_timestep_embed_patch, attention patches,
    object patches and SVD's num_video_frames / image_only_indicator / time_context apply as in ComfyUI). With
    `shallow`, the feature cache's partial step: the middle of the UNet is replaced by the kept feature.

    Follows 0.8.0 and 0.30.0, which are the same for a call without ControlNet residuals and without the patches in
    UNFOLLOWED_PATCHES (0.30.0 added middle_block_after_patch and moved forward_timestep_embed_patch's check to the
    head of forward_timestep_embed's loop, which this calls). A call with either is refused here: it runs ComfyUI's
    own forward. test_comfy_compat.py checks that the full sequence equals the running ComfyUI's forward bit for
    bit."""
    import torch
    from comfy.ldm.modules.diffusionmodules import openaimodel
    named = unfollowed_patches(transformer_options)
    if named:
        raise ValueError(f"unet_forward does not follow {', '.join(named)}: run ComfyUI's own forward")
    transformer_options["original_shape"] = list(x.shape)
    transformer_options["transformer_index"] = 0
    patches = transformer_options.get("patches", {})
    video = {"time_context": kwargs.get("time_context", None),
             "num_video_frames": kwargs.get("num_video_frames", unet.default_num_video_frames),
             "image_only_indicator": kwargs.get("image_only_indicator", None)}
    emb = unet.time_embed(openaimodel.timestep_embedding(timesteps, unet.model_channels, repeat_only=False)
                          .to(x.dtype))
    for p in patches.get("emb_patch", []):
        emb = p(emb, unet.model_channels, transformer_options)
    if unet.num_classes is not None:
        emb = emb + unet.label_emb(y)
    h, hs = x, []
    for block in range(len(unet.input_blocks) if shallow is None else shallow.branch + 1):
        transformer_options["block"] = ("input", block)
        h = openaimodel.forward_timestep_embed(unet.input_blocks[block], h, emb, context, transformer_options,
                                               **video)
        hs.append(h)
    if shallow is None:
        transformer_options["block"] = ("middle", 0)
        if unet.middle_block is not None:
            h = openaimodel.forward_timestep_embed(unet.middle_block, h, emb, context, transformer_options, **video)
    else:
        transformer_options["transformer_index"] = shallow.transformer_index  # as a full step has it there
        h = shallow.feature
    count = len(unet.output_blocks)
    for block in range(count - len(hs), count):
        transformer_options["block"] = ("output", block)
        h = torch.cat([h, hs.pop()], dim=1)
        output_shape = hs[-1].shape if hs else None
        h = openaimodel.forward_timestep_embed(unet.output_blocks[block], h, emb, context, transformer_options,
                                               output_shape, **video)
    h = h.type(x.dtype)
    return unet.id_predictor(h) if unet.predict_codebook_ids else unet.out(h)


def keep_output_block_input(transformer_options: dict, block: int) -> tuple[dict, dict]:
    """(a copy of transformer_options for ComfyUI's own forward, `kept`): after the call, kept["h"] is the h that
    entered output block `block` and kept["index"] the transformer_index there. Uses ComfyUI's output_block_patch
    (`patch(h, hsp, transformer_options) -> (h, hsp)`, called with transformer_options["block"] == ("output", id);
    0.8.0 and later), put first; the patches dict is copied, as it can be shared with the model's options."""
    kept: dict[str, Any] = {}

    def keep(h: torch.Tensor, hsp: torch.Tensor, options: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if options.get("block") == ("output", block):
            kept["h"], kept["index"] = h, options.get("transformer_index", 0)
        return h, hsp
    patches = dict(transformer_options.get("patches", {}))
    patches["output_block_patch"] = [keep, *patches.get("output_block_patch", [])]
    return {**transformer_options, "patches": patches}, kept


# --- core EasyCache ----------------------------------------------------------------------------------------------

# The fields of core EasyCache's holder (comfy_extras/nodes_easycache.py EasyCacheHolder, the same in 0.8.0 and
# 0.30.0) that the cut's handoff writes. 0.30.0 added can_apply_cache_diff(uuids) (#12020): a step is skipped only
# when every conditioning of the batch has a cached difference.
EASYCACHE_FIELDS = ("first_cond_uuid", "output_prev_subsampled", "output_prev_norm")


def easycache_holder(transformer_options: dict) -> Any | None:
    """Core EasyCache's holder of this run (transformer_options["easycache"], 0.8.0 and later), else None; None also
    for LazyCache, whose holder sits under the same key (its `name` is "LazyCache") and needs no handoff."""
    holder = transformer_options.get("easycache")
    if holder is None or "LazyCache" in str(getattr(holder, "name", type(holder).__name__)):
        return None
    return holder


def easycache_missing(holder: Any) -> list[str]:
    """The EASYCACHE_FIELDS this holder lacks (a changed EasyCache)."""
    return [name for name in EASYCACHE_FIELDS if not hasattr(holder, name)]


def easycache_follow(holder: Any, uuids: list) -> bool:
    """Point EasyCache at the conditioning with these uuids (its first_cond_uuid) and drop its output history, which
    belongs to the branch it measured before; False where it already follows them (nothing done)."""
    if holder.first_cond_uuid in uuids:
        return False
    holder.first_cond_uuid = uuids[0]
    for name in EASYCACHE_FIELDS[1:]:
        if hasattr(holder, name):
            setattr(holder, name, None)
    return True


# --- VAE decode --------------------------------------------------------------------------------------------------

def vae_free_memory(vae: Any) -> float:
    """Free memory for the VAE's batches as core VAE.decode counts it: the patcher's get_free_memory where it exists
    (added after 0.8.0; 0.30.0 and 0.38.1 have it: it adds what dynamic VRAM can reclaim), else
    comfy.model_management.get_free_memory (0.8.0's VAE.decode uses that)."""
    patcher_free = getattr(vae.patcher, "get_free_memory", None)
    if patcher_free is not None:
        return patcher_free(vae.device)
    import comfy.model_management
    return comfy.model_management.get_free_memory(vae.device)


def vae_output_dtype(vae: Any) -> torch.dtype:
    """The dtype core VAE.decode returns: VAE.vae_output_dtype() (= model_management.intermediate_dtype(), float16
    under --fp16-intermediates) where it exists (added after 0.8.0; 0.30.0 and 0.38.1 have it), else float32 (0.8.0's
    decode ends with .float())."""
    import torch
    dtype = getattr(vae, "vae_output_dtype", None)
    return dtype() if dtype is not None else torch.float32


# --- progress text -----------------------------------------------------------------------------------------------

def show_progress_text(text: str) -> bool:
    """Show `text` on the executing node where ComfyUI shows progress text (server.PromptServer.instance
    .send_progress_text and comfy_execution.utils.get_executing_context, 0.8.0 and later). False where nothing
    shows it: no node is executing (a direct sampler call), no PromptServer instance (the runner without one), or
    a ComfyUI without these."""
    node_id = executing_node_id()
    try:
        from server import PromptServer
    except ImportError:
        return False
    server = getattr(PromptServer, "instance", None)
    if node_id is None or not hasattr(server, "send_progress_text"):
        return False
    server.send_progress_text(text, node_id)
    return True


# --- runner start-up (main.py's steps, for the runner's in-process ComfyUI) --------------------------------------

def governance_initialize() -> bool:
    """main.py's first step in newer ComfyUI (app/governance.py, 0.38.1; absent in 0.8.0 and 0.30.0): apply the
    organisation's policy. True where it ran."""
    try:
        from app import governance
    except ImportError:
        return False
    if not hasattr(governance, "initialize"):
        return False
    governance.initialize()
    return True


def hook_breaker() -> types.ModuleType | None:
    """main.py's hook_breaker_ac10a0 (save_functions / restore_functions around loading custom nodes: undo what they
    patch in ComfyUI's core functions); 0.8.0 and later have it, None where a ComfyUI does not."""
    try:
        import hook_breaker_ac10a0
    except ImportError:
        return None
    return hook_breaker_ac10a0


def partner_nodes_off(args: argparse.Namespace) -> bool:
    """Whether partner (paid API) nodes are off: 0.8.0 and 0.30.0 read --disable-api-nodes; 0.38.1 reads
    --disable-partner-nodes, which --disable-api-nodes (there an alias of --offline) also sets."""
    partner_off = getattr(args, "disable_partner_nodes", None)
    return bool(args.disable_api_nodes if partner_off is None else partner_off)


def setup_logging(args: argparse.Namespace) -> None:
    """ComfyUI's logging set-up as main.py makes it, on stderr: app.logger.setup_logger (0.8.0 and later) with
    0.8.0's --verbose, one level name; from 0.30.0 on --verbose is a list of (LEVEL, FILE or None) read through
    cli_args.get_console_log_level, and where setup_logger takes file_outputs (0.30.0 and later) the files too.
    Plain logging at INFO where a ComfyUI has no app.logger."""
    import logging

    import comfy.cli_args
    try:
        from app.logger import setup_logger
    except ImportError:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        return
    if not hasattr(comfy.cli_args, "get_console_log_level"):
        setup_logger(log_level=args.verbose, use_stdout=False)
        return
    options = {}
    if hasattr(comfy.cli_args, "get_file_log_outputs") and \
            "file_outputs" in inspect.signature(setup_logger).parameters:
        options["file_outputs"] = comfy.cli_args.get_file_log_outputs(args.verbose)
    setup_logger(log_level=comfy.cli_args.get_console_log_level(args.verbose), use_stdout=False, **options)


def load_extra_paths(root: pathlib.Path, args: argparse.Namespace, extra_config: types.ModuleType) -> None:
    """Extra model folders, as main.py reads them (utils.extra_config.load_extra_path_config): 0.8.0 and 0.30.0 read
    extra_model_paths.yaml; 0.38.1 reads extra_paths.yaml first (its primary file, a superset of the other) with
    allow_system_dirs=True where load_extra_path_config takes it, else extra_model_paths.yaml; then every
    --extra-model-paths-config file."""
    extra_paths = root / "extra_paths.yaml"
    legacy = root / "extra_model_paths.yaml"
    if extra_paths.is_file():
        if "allow_system_dirs" in inspect.signature(extra_config.load_extra_path_config).parameters:
            extra_config.load_extra_path_config(str(extra_paths), allow_system_dirs=True)
        else:
            extra_config.load_extra_path_config(str(extra_paths))
    elif legacy.is_file():
        extra_config.load_extra_path_config(str(legacy))
    for config in itertools.chain(*(args.extra_model_paths_config or [])):
        extra_config.load_extra_path_config(config)


def new_prompt_server(server_module: types.ModuleType, loop: asyncio.AbstractEventLoop,
                      args: argparse.Namespace) -> Any:
    """server.PromptServer as main.py creates it: PromptServer(loop) in 0.8.0 and 0.30.0; PromptServer(loop,
    asset_manager) in 0.38.1, where a headless run takes app.assets.manager.NoAssets (assets off)."""
    parameters = inspect.signature(server_module.PromptServer.__init__).parameters
    if "asset_manager" in parameters:
        from app.assets.manager import NoAssets
        return server_module.PromptServer(loop, NoAssets(args))
    return server_module.PromptServer(loop)


def new_prompt_executor(execution: types.ModuleType, server: Any, cache_type: Any) -> Any:
    """execution.PromptExecutor with no node cache kept between runs. 0.8.0 reads cache_args["lru"] and ["ram"];
    0.30.0 and 0.38.1 also read cache_args["ram_inactive"] (a KeyError without it); each ignores keys it does not
    read."""
    return execution.PromptExecutor(server, cache_type=cache_type,
                                    cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})


def executing_node_id() -> Any | None:
    """The id of the node ComfyUI is executing now (comfy_execution.utils.get_executing_context, 0.8.0 and later),
    None outside a node or where this ComfyUI has no executing context."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    context = get_executing_context()
    return None if context is None else context.node_id
