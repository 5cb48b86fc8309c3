"""vcut: ComfyUI entry point. Registers the pack's nodes (V3 node API) and its web extension (WEB_DIRECTORY)."""
from comfy_api.latest import ComfyExtension, io

from .nodes import ALL_NODES

# ComfyUI serves the JavaScript in web/ to the frontend (nodes.load_custom_node reads this for V3 packs too)
WEB_DIRECTORY = "./web"


class VcutExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(ALL_NODES)


async def comfy_entrypoint() -> VcutExtension:
    return VcutExtension()


__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
