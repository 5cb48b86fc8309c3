"""Integration tier: runs only with COMFYUI_PATH set (and ComfyUI's Python); see harness.py.

Nothing is written into the ComfyUI checkout (CI's copy is read-only): bytecode goes to a cache folder (also for the
ComfyUI processes the tests start, through PYTHONPYCACHEPREFIX), and the harness, the runner runs and the test server
use temporary input / output / temp / user folders."""
import os
import pathlib
import sys

import pytest

if sys.pycache_prefix is None:  # scripts/test.sh sets PYTHONPYCACHEPREFIX; a bare `pytest` run gets the same
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    os.environ["PYTHONPYCACHEPREFIX"] = str(cache / "vcut" / "pycache")
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import harness  # noqa: E402  (after the sys.path / package setup above)


def pytest_collection_modifyitems(config, items):
    if harness.comfy_path() is None:
        skip = pytest.mark.skip(reason="COMFYUI_PATH is not set: integration tier not run")
        for item in items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def comfy_nodes():
    return harness.init_comfy()
