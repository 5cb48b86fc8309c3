"""nodes/compat.py on ComfyUI's own io.Schema: the fields of newer ComfyUI versions (search_aliases,
essentials_category, both io.Schema fields in 0.38.1) reach io.Schema only where it has them."""
import dataclasses
import importlib.util

import harness
import pytest


def compat_module():
    spec = importlib.util.spec_from_file_location("vcut_compat", harness.PACK_ROOT / "nodes" / "compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NEWER = {"search_aliases": ["loop video", "seamless"], "essentials_category": "Video Tools"}


def test_each_field_reaches_io_schema_exactly_where_this_comfyui_declares_it(comfy_nodes):
    """On the running ComfyUI's own io.Schema: a field it declares is passed and kept, one it lacks is left out (and
    io.Schema itself would refuse it), so the same node code loads on 0.8.0 (neither field), 0.30.0 and 0.38.1."""
    from comfy_api.latest import io
    declared = {f.name for f in dataclasses.fields(io.Schema) if f.init}
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
