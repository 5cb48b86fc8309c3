"""nodes/compat.py on ComfyUI's own io.Schema: the fields of newer ComfyUI versions (search_aliases,
essentials_category, both io.Schema fields in 0.38.1) reach io.Schema only where it has them."""
import dataclasses
import importlib.util

import pytest

import harness


def compat_module():
    spec = importlib.util.spec_from_file_location("vcut_nodes_compat", harness.PACK_ROOT / "nodes" / "compat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NEWER = {"search_aliases": ["loop video", "seamless"], "essentials_category": "Video Tools"}


def test_fields_this_comfyui_lacks_are_left_out(comfy_nodes):
    from comfy_api.latest import io
    import comfyui_version
    extras = compat_module().schema_extras(io.Schema, description="A node.", **NEWER)
    if comfyui_version.__version__ == "0.8.0":  # its io.Schema has neither field and refuses them
        assert extras == {"description": "A node."}
        with pytest.raises(TypeError, match="search_aliases"):
            io.Schema(node_id="VCUTCompatCheck", category="vcut/test", search_aliases=["x"])
    schema = io.Schema(node_id="VCUTCompatCheck", category="vcut/test", **extras)
    assert schema.description == "A node."


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
