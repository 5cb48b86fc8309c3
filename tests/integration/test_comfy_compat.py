"""nodes/comfy_compat.py, the one home of the ComfyUI internals the pack follows, checked on the running ComfyUI
(0.8.0 and 0.30.0 in the integration tier): every expectation comes from what this ComfyUI has (its classes,
signatures, sources and parsers), never from its version string, so a release that changed one is detected here.

- The UNet forward copy (comfy_compat.unet_forward, the code of the feature cache's partial step): a full step
  through it equals ComfyUI's own diffusion_model.forward bit for bit, on the SVD UNet's real calls of a sampling
  run; a partial step with the kept feature equals the full step; every patch the running forward applies between
  blocks is one the copy refuses.
- Each other compat function gives what the running ComfyUI's own object gives.
- Schema fields of newer releases (search_aliases, essentials_category) reach io.Schema only where it has them."""
import asyncio
import dataclasses
import importlib.util
import inspect
import pathlib
import re

import harness
import pytest
import torch

FRAMES = 3
CAPTURE = "vcut_test_capture"


def compat_module():
    """nodes/comfy_compat.py loaded by its path under a private name, as the runner loads it (runner/local.py)."""
    spec = importlib.util.spec_from_file_location("vcut_compat", harness.PACK_ROOT / "nodes" / "comfy_compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pack_compat():
    """The module as the pack's nodes use it (ComfyUI's loader imported the pack)."""
    return harness.pack_module().nodes.comfy_compat


def sampled_unet_calls(steps=2):
    """Every UNet call of a real sampling run of the tiny SVD (ComfyUI's SVD_img2vid model, KSampler path, SVD
    conditioning as SVD_img2vid_Conditioning gives it): (args, kwargs, output), recorded by a DIFFUSION_MODEL
    wrapper around ComfyUI's own UNetModel._forward."""
    from comfy.patcher_extension import WrappersMP
    model = harness.tiny_svd()
    recorded, calls = model.clone(), []

    def record(executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        options = {k: v for k, v in args[5].items() if k != "wrappers"}  # the forward without this recorder
        calls.append(([a.clone() if isinstance(a, torch.Tensor) else a for a in args[:5]] + [options],
                      dict(kwargs), out.clone()))
        return out
    recorded.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, CAPTURE, record)
    harness.sample(recorded, *harness.svd_conds(frames=FRAMES), steps=steps)
    assert calls, "the sampling run made no UNet call"
    return model.model.diffusion_model, calls


def fresh(options: dict) -> dict:
    """A copy of a call's transformer_options for one more forward (the forward writes block / index into it)."""
    return {**options, "patches": dict(options.get("patches", {}))}


def test_full_step_through_the_packs_forward_equals_comfyuis_own_unet_forward_bit_for_bit(comfy_nodes):
    """The layer sequence the feature cache's partial step follows (comfy_compat.unet_forward, full) against the
    running ComfyUI's own UNetModel.forward on the same calls: equal bit for bit (torch.equal), and equal to what
    the sampling run itself got. A ComfyUI whose forward differs fails here instead of being trusted."""
    compat = pack_compat()
    unet, calls = sampled_unet_calls()
    assert compat.is_comfy_unet(unet)
    with torch.no_grad():
        for i, (args, kwargs, sampled) in enumerate(calls):
            x, t, context, y, control, options = args
            assert control is None and not compat.unfollowed_patches(options)
            comfy_out = unet.forward(x, t, context, y, None, fresh(options), **kwargs)
            pack_out = compat.unet_forward(unet, x, t, context, y, fresh(options), kwargs)
            assert torch.equal(comfy_out, sampled), i
            assert torch.equal(pack_out, comfy_out), i


def test_partial_step_with_the_calls_own_feature_equals_comfyuis_forward_at_every_branch(comfy_nodes):
    """The partial step (comfy_compat.unet_forward with a ShallowPath), given the feature that ComfyUI's own forward
    had at output block L-1-branch of the same call (comfy_compat.keep_output_block_input, the hook the cache keeps
    it with), gives ComfyUI's forward bit for bit at every branch of the SVD UNet."""
    compat = pack_compat()
    unet, calls = sampled_unet_calls(steps=1)
    x, t, context, y, _, options = calls[0][0]
    kwargs = calls[0][1]
    with torch.no_grad():
        for branch in range(len(unet.input_blocks)):
            hooked, kept = compat.keep_output_block_input(fresh(options), len(unet.output_blocks) - 1 - branch)
            full = unet.forward(x, t, context, y, None, hooked, **kwargs)
            shallow = compat.ShallowPath(branch, kept["h"], kept["index"])
            partial = compat.unet_forward(unet, x, t, context, y, fresh(options), kwargs, shallow)
            assert torch.equal(partial, full), branch


def test_every_patch_the_running_forward_applies_between_blocks_is_one_the_copy_refuses(comfy_nodes):
    """The patches the running UNetModel._forward reads from transformer_options["patches"] (from its own source):
    emb_patch the copy follows; every other is in UNFOLLOWED_PATCHES, so a call with it runs ComfyUI's forward (the
    cache runs that step fully) and the copy refuses it by name."""
    from comfy.ldm.modules.diffusionmodules import openaimodel
    compat = pack_compat()
    read = set(re.findall(r"""transformer_patches\[["'](\w+)["']\]""", inspect.getsource(openaimodel.UNetModel._forward)))
    assert "emb_patch" in read and "output_block_patch" in read  # the source was read
    assert read - {"emb_patch"} <= set(compat.UNFOLLOWED_PATCHES), read
    unet, calls = sampled_unet_calls(steps=1)
    x, t, context, y, _, options = calls[0][0]
    for name in sorted(read - {"emb_patch"}):
        with pytest.raises(ValueError, match=name):
            compat.unet_forward(unet, x, t, context, y, {**options, "patches": {name: [lambda *a: a]}}, calls[0][1])


def test_clone_carries_what_the_patch_layer_relies_on(comfy_nodes):
    """comfy_compat.clone on the running ModelPatcher (clone() takes no required argument in any release): a new
    patcher on the same model, with the original's attachments and wrappers, the original unchanged."""
    from comfy.patcher_extension import WrappersMP
    compat = pack_compat()
    model = harness.tiny_svd()
    required = [p for p in list(inspect.signature(model.clone).parameters.values())
                if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    assert required == []

    def wrapper(executor, *args, **kwargs):
        return executor(*args, **kwargs)
    model.set_attachments(CAPTURE, "settings")
    model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, CAPTURE, wrapper)
    cloned = compat.clone(model)
    assert cloned is not model and cloned.model is model.model and cloned.is_clone(model)
    assert cloned.get_attachment(CAPTURE) == "settings"
    assert cloned.get_wrappers(WrappersMP.DIFFUSION_MODEL, CAPTURE) == [wrapper]
    cloned.remove_wrappers_with_key(WrappersMP.DIFFUSION_MODEL, CAPTURE)
    assert model.get_wrappers(WrappersMP.DIFFUSION_MODEL, CAPTURE) == [wrapper]


def test_hook_weights_read_the_hooks_the_running_patcher_applies(comfy_nodes):
    """comfy_compat.hook_weights on the running ModelPatcher and comfy.hooks: None while no hooks are applied; once
    the patcher holds a HookGroup (as ComfyUI's patch_hooks sets it before a hooked conditioning's calls), one
    (hook, strength) pair per hook, whose strength follows the hook's keyframe."""
    import comfy.hooks
    compat = pack_compat()
    model = harness.tiny_svd()
    assert compat.hook_weights(model) is None
    group = comfy.hooks.create_hook_model_as_lora(comfy.hooks.get_patch_weights_from_model(harness.tiny_svd(1)),
                                                  None, 1.0, 0.0)
    model.model.current_patcher, model.current_hooks = model, group
    try:
        weights = compat.hook_weights(model)
        assert len(weights) == len(group.hooks) == 1 and weights[0][1] == float(group.hooks[0].strength)
    finally:
        model.model.current_patcher, model.current_hooks = None, None


def test_easycache_functions_on_the_running_easycache_holders(comfy_nodes):
    """On the running ComfyUI's own EasyCacheHolder: found under "easycache", no field missing, pointed at the
    positive's uuids with its output history dropped; LazyCacheHolder (same key) is not EasyCache's."""
    from comfy_extras.nodes_easycache import EasyCacheHolder, LazyCacheHolder
    compat = pack_compat()
    holder = EasyCacheHolder(0.2, 0.15, 0.95, subsample_factor=8, offload_cache_diff=False)
    assert compat.easycache_holder({"easycache": holder}) is holder
    assert compat.easycache_holder({}) is None
    assert compat.easycache_holder({"easycache": LazyCacheHolder(0.2, 0.15, 0.95, 8, False)}) is None
    assert compat.easycache_missing(holder) == []
    holder.first_cond_uuid, holder.output_prev_subsampled, holder.output_prev_norm = "negative", 1.0, 1.0
    assert compat.easycache_follow(holder, ["positive", "positive-2"])
    assert (holder.first_cond_uuid, holder.output_prev_subsampled, holder.output_prev_norm) == ("positive", None, None)
    assert not compat.easycache_follow(holder, ["positive-2", "positive"])  # already follows it: nothing done
    assert holder.first_cond_uuid == "positive"


def test_vae_functions_give_what_the_running_vae_decode_uses(comfy_nodes, monkeypatch):
    """Free memory: the VAE patcher's get_free_memory where this ComfyUI's patcher has one, else
    model_management.get_free_memory (each made to answer a value of its own, to tell which was asked). Output
    dtype: the VAE's vae_output_dtype() where it has one, else float32, and the dtype core VAE.decode returns."""
    import comfy.model_management
    compat = pack_compat()
    vae = harness.tiny_vae()
    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *a, **k: 1000.0)
    if hasattr(vae.patcher, "get_free_memory"):
        monkeypatch.setattr(vae.patcher, "get_free_memory", lambda device: 2000.0)
        assert compat.vae_free_memory(vae) == 2000.0
    else:
        assert compat.vae_free_memory(vae) == 1000.0
    monkeypatch.undo()
    expected = vae.vae_output_dtype() if hasattr(vae, "vae_output_dtype") else torch.float32
    assert compat.vae_output_dtype(vae) == expected
    with torch.inference_mode():
        assert vae.decode(torch.zeros(1, 4, 2, 2)).dtype == expected


def test_progress_text_and_executing_node_reach_a_real_prompt_server(comfy_nodes, monkeypatch):
    """A PromptServer made as the runner makes it (comfy_compat.new_prompt_server, this ComfyUI's constructor):
    inside ComfyUI's executing context the text is sent to it as ComfyUI's progress-text message of that node;
    outside a node nothing is sent. executing_node_id reads the same context."""
    import server
    from comfy.cli_args import args
    from comfy_execution.utils import CurrentNodeContext
    compat = pack_compat()
    monkeypatch.setattr(server.PromptServer, "instance", getattr(server.PromptServer, "instance", None),
                        raising=False)  # restored after the test: the session's other tests run without a server
    loop = asyncio.new_event_loop()
    try:
        prompt_server = compat.new_prompt_server(server, loop, args)
        assert server.PromptServer.instance is prompt_server
        assert compat.executing_node_id() is None
        assert compat.show_progress_text("outside a node") is False
        with CurrentNodeContext("prompt", "42"):
            assert compat.executing_node_id() == "42"
            assert compat.show_progress_text("VCUT run: 4 steps") is True
        loop.run_until_complete(asyncio.sleep(0))
        event, data, _ = prompt_server.messages.get_nowait()
        assert event == server.BinaryEventTypes.TEXT
        assert data.endswith(b"42VCUT run: 4 steps") and prompt_server.messages.empty()
    finally:
        loop.close()


def test_runner_start_up_functions_on_the_running_comfyui(comfy_nodes, tmp_path, monkeypatch):
    """The start-up steps the runner takes from main.py, each against what this ComfyUI has: ComfyUI's own argument
    parser for the partner-nodes flag; app.governance and hook_breaker_ac10a0 where they exist; extra model paths
    read by ComfyUI's own utils.extra_config into folder_paths; PromptExecutor from this execution module."""
    import copy

    import comfy.cli_args
    import execution
    import folder_paths
    import utils.extra_config
    compat = compat_module()  # as the runner loads it
    parse = comfy.cli_args.parser.parse_args
    assert compat.partner_nodes_off(parse(["--disable-api-nodes"])) is True
    assert compat.partner_nodes_off(parse([])) is False
    has_governance = importlib.util.find_spec("app.governance") is not None
    if not has_governance:
        assert compat.governance_initialize() is False
    breaker = compat.hook_breaker()
    assert (breaker is not None) == (importlib.util.find_spec("hook_breaker_ac10a0") is not None)
    monkeypatch.setattr(folder_paths, "folder_names_and_paths", copy.deepcopy(folder_paths.folder_names_and_paths))
    (tmp_path / "extra_model_paths.yaml").write_text(
        f"vcut_test:\n  base_path: {tmp_path}\n  vcut_test_models: models/\n")
    compat.load_extra_paths(tmp_path, parse([]), utils.extra_config)
    assert str(tmp_path / "models") in folder_paths.get_folder_paths("vcut_test_models")
    executor = compat.new_prompt_executor(execution, object(), execution.CacheType.CLASSIC)
    assert isinstance(executor, execution.PromptExecutor)


def test_setup_logging_passes_what_the_running_setup_logger_takes(comfy_nodes, monkeypatch):
    """`--verbose DEBUG` through ComfyUI's own parser reaches app.logger.setup_logger as log_level DEBUG, with
    keywords the running setup_logger's signature accepts. setup_logger itself is replaced by a recorder bound to
    that signature: the real one takes over this process's stdout and stderr (the runner's subprocess runs it)."""
    import app.logger
    import comfy.cli_args
    compat = compat_module()
    signature, received = inspect.signature(app.logger.setup_logger), {}

    def recorder(*args, **kwargs):
        received.update(signature.bind(*args, **kwargs).arguments)
    monkeypatch.setattr(app.logger, "setup_logger", recorder)
    compat.setup_logging(comfy.cli_args.parser.parse_args(["--verbose", "DEBUG"]))
    assert received["log_level"] == "DEBUG" and received["use_stdout"] is False
    assert set(received) <= set(signature.parameters)


def test_every_compat_function_is_checked_here():
    """A function added to comfy_compat without a check on the running ComfyUI fails this test."""
    source = pathlib.Path(__file__).read_text()
    functions = [name for name, f in inspect.getmembers(compat_module(), inspect.isfunction)
                 if f.__module__ == "vcut_compat" and not name.startswith("_")]
    unchecked = [name for name in functions if not re.search(rf"compat(_module\(\))?\.{name}\(", source)]
    assert functions and unchecked == [], unchecked


NEWER = {"search_aliases": ["loop video", "seamless"], "essentials_category": "Video Tools"}


def test_each_field_reaches_io_schema_exactly_where_this_comfyui_declares_it(comfy_nodes):
    """On the running ComfyUI's own io.Schema: a field it declares is passed and kept, one it lacks is left out (and
    io.Schema itself would refuse it), so the same node code loads on 0.8.0 (neither field), 0.30.0 and 0.38.1."""
    from comfy_api.latest import io
    declared = {f.name for f in dataclasses.fields(io.Schema) if f.init}
    assert compat_module().schema_fields(io.Schema) == declared
    extras = compat_module().schema_extras(io.Schema, description="A node.", **NEWER)
    assert extras == {"description": "A node.", **{k: v for k, v in NEWER.items() if k in declared}}
    schema = io.Schema(node_id="VCUTCompatCheck", category="vcut/test", **extras)
    assert schema.description == "A node."
    for name, value in NEWER.items():
        if name in declared:
            assert getattr(schema, name) == value
        else:
            with pytest.raises(TypeError, match=name):
                io.Schema(node_id="VCUTCompatCheck", category="vcut/test", **{name: value})


def test_the_pack_refuses_a_comfyui_older_than_it_supports_by_name(comfy_nodes, tmp_path, monkeypatch, caplog):
    """ComfyUI's own custom-node loader on a copy of the pack's entry point while comfyui_version says 0.7.2: the
    load fails with both versions named (and the pack loaded for this ComfyUI is untouched)."""
    import asyncio
    import logging
    import sys
    import types

    import comfyui_version
    copy = tmp_path / "vcut_old_comfyui"
    copy.mkdir()
    (copy / "__init__.py").write_text((harness.PACK_ROOT / "__init__.py").read_text())
    monkeypatch.setitem(sys.modules, "comfyui_version", types.SimpleNamespace(__version__="0.7.2"))
    with caplog.at_level(logging.WARNING):
        assert asyncio.run(comfy_nodes.load_custom_node(str(copy))) is False
    assert "vcut needs ComfyUI 0.8.0 or newer; this ComfyUI is 0.7.2" in caplog.text
    monkeypatch.setitem(sys.modules, "comfyui_version", comfyui_version)
    sys.modules.pop(str(copy).replace(".", "_x_"), None)
    assert harness.pack_node_ids()  # the pack ComfyUI loaded at start-up is still registered


def test_fields_a_newer_schema_has_are_passed(comfy_nodes):
    """io.Schema as 0.38.1 declares it: ComfyUI's own dataclass with the two fields added."""
    from comfy_api.latest import io
    newer_schema = dataclasses.make_dataclass(
        "Schema", [("search_aliases", list, dataclasses.field(default_factory=list)),
                   ("essentials_category", "str | None", None)], bases=(io.Schema,))
    extras = compat_module().schema_extras(newer_schema, **NEWER)
    assert extras == NEWER
    schema = newer_schema(node_id="VCUTCompatCheck", category="vcut/test", **extras)
    assert schema.search_aliases == NEWER["search_aliases"] and schema.essentials_category == "Video Tools"
