"""The pack's layout as its imports show it: the cores (anchor/, cache/, codec/, cut/, decode/, loop/, validation/,
video/) import no ComfyUI and none of the glue; packages import one way (no circle, anchor/ never imports loop/,
validation/ imports no other package, so every core can use it); only
nodes/patch_layer.py attaches wrappers or object patches to a ModelPatcher. No ComfyUI needed: the files are read, not
imported."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORES = ("anchor", "cache", "codec", "cut", "decode", "loop", "validation", "video")
PACKAGES = (*CORES, "nodes", "runner")
COMFY_MODULES = ("comfy", "comfy_api", "comfy_execution", "comfy_extras", "comfyui_version", "execution",
                 "folder_paths", "latent_preview", "node_helpers", "nodes", "server", "utils")
PATCHER_CALLS = ("add_wrapper_with_key", "remove_wrappers_with_key", "add_object_patch", "set_model_patch",
                 "set_model_attn2_replace", "set_model_unet_function_wrapper",
                 "set_model_sampler_calc_cond_batch_function")


def imports_of(path: pathlib.Path) -> tuple[set[str], set[str]]:
    """(absolute top-level modules, pack packages reached by relative imports) of one file of a pack package."""
    absolute, pack = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            absolute.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            absolute.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.level == 2:  # from ..package(.module) import ... / from .. import package
            pack.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return absolute, pack


def package_imports() -> dict[str, set[str]]:
    graph = {}
    for package in PACKAGES:
        reached = set()
        for path in (ROOT / package).glob("*.py"):
            reached |= imports_of(path)[1]
        graph[package] = reached - {package}
    return graph


@pytest.mark.parametrize("package", CORES)
def test_cores_import_no_comfyui_and_no_glue(package):
    for path in sorted((ROOT / package).glob("*.py")):
        absolute, pack = imports_of(path)
        assert not absolute & set(COMFY_MODULES), f"{path.relative_to(ROOT)} imports ComfyUI: {absolute}"
        assert not pack & {"nodes", "runner"}, f"{path.relative_to(ROOT)} imports the glue: {pack}"


def test_packages_import_one_way():
    graph = package_imports()
    assert "loop" not in graph["anchor"], "anchor/ (frame anchoring) must not depend on loop/ (LoopAnimate)"
    assert not graph["validation"], f"validation/ (every core's checks) must import no other package: {graph}"

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph.get(start, ()))
    circles = sorted(p for p in graph if reaches(p, p))
    assert not circles, f"packages in an import circle: {circles} ({graph})"


def test_only_the_patch_layer_patches_models():
    """nodes/patch_layer.py owns every wrapper key; any other module that patched a ModelPatcher itself could leave
    a key behind that a later node of the same feature does not replace."""
    callers = []
    for path in sorted(ROOT.glob("nodes/*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in PATCHER_CALLS and path.name != "patch_layer.py":
                callers.append(f"{path.name}:{node.lineno} {node.attr}")
    assert not callers, callers
    assert "add_wrapper_with_key" in (ROOT / "nodes" / "patch_layer.py").read_text()
