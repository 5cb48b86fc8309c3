"""vcut: ComfyUI entry point. Registers the pack's nodes (V3 node API); nothing else."""
from comfy_api.latest import ComfyExtension, io

from .nodes import ALL_NODES


class VcutExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(ALL_NODES)


async def comfy_entrypoint() -> VcutExtension:
    return VcutExtension()


__all__ = ["comfy_entrypoint"]
