"""vcut: ComfyUI entry point. Registers the pack's nodes (V3 node API) and its web extension (WEB_DIRECTORY)."""
import re

OLDEST_COMFYUI = (0, 8, 0)  # pyproject's requires-comfyui; the integration tier runs 0.8.0 and 0.30.0


def _refuse_older_comfyui() -> None:
    """Stop loading, with the versions named, on a ComfyUI older than the pack supports (its comfy_api.latest differs
    or is missing there, which would otherwise fail later with an unrelated ImportError or TypeError)."""
    try:
        import comfyui_version  # ComfyUI's own version module (ComfyUI 0.3.x and newer)
        found = str(comfyui_version.__version__)
        parts = re.match(r"(\d+)\.(\d+)\.(\d+)", found)
        too_old = parts is not None and tuple(map(int, parts.groups())) < OLDEST_COMFYUI  # unparsed: a dev build
    except ImportError:
        found, too_old = "older than 0.3 (it has no comfyui_version module)", True
    if too_old:
        raise RuntimeError(f"vcut needs ComfyUI {'.'.join(map(str, OLDEST_COMFYUI))} or newer; this ComfyUI is "
                           f"{found}. Update ComfyUI (git pull, or ComfyUI Manager > Update ComfyUI), then restart.")


_refuse_older_comfyui()

from comfy_api.latest import ComfyExtension, io  # noqa: E402  (after the version check, which must come first)

from .nodes import ALL_NODES  # noqa: E402  (after the version check, which must come first)

# ComfyUI serves the JavaScript in web/ to the frontend (nodes.load_custom_node reads this for V3 packs too)
WEB_DIRECTORY = "./web"


class VcutExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(ALL_NODES)


async def comfy_entrypoint() -> VcutExtension:
    return VcutExtension()


__all__ = ["comfy_entrypoint", "WEB_DIRECTORY"]
