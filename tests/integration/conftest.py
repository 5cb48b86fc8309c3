"""Integration tier: runs only with COMFYUI_PATH set (and ComfyUI's Python); see harness.py."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import harness  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if harness.comfy_path() is None:
        skip = pytest.mark.skip(reason="COMFYUI_PATH is not set: integration tier not run")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def comfy_nodes():
    return harness.init_comfy()
