"""Schema fields of newer ComfyUI versions, used only where the running ComfyUI has them.

ComfyUI 0.8.0's io.Schema (a dataclass) has no `search_aliases` (other names the node search finds) and no
`essentials_category` (the node's group in the frontend's Essentials tab); newer ones do (both are io.Schema fields
in 0.38.1). A node passes them through `schema_extras`, which keeps the fields this ComfyUI's io.Schema declares:

    return io.Schema(node_id=..., display_name=..., category=..., inputs=[...], outputs=[...],
                     **schema_extras(io.Schema, search_aliases=["loop video"], essentials_category="Video Tools"))
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any


def schema_fields(schema_class: type) -> set[str]:
    """The keyword arguments that `schema_class` (ComfyUI's io.Schema) accepts."""
    if dataclasses.is_dataclass(schema_class):
        return {f.name for f in dataclasses.fields(schema_class) if f.init}
    return set(inspect.signature(schema_class).parameters)


def schema_extras(schema_class: type, **fields: Any) -> dict:
    """The `fields` that this ComfyUI's io.Schema has (older versions would refuse the others)."""
    known = schema_fields(schema_class)
    return {name: value for name, value in fields.items() if name in known}
