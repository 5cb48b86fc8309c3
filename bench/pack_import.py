"""Import the pack the way ComfyUI does (its folder as a package), under the name `vcut`, from scripts and tests.

The package object is registered without running the pack's `__init__.py` (which needs ComfyUI), so `vcut.cut`,
`vcut.cache`, `vcut.loop`, `vcut.video`, `vcut.codec` and `vcut.bench` import whatever this checkout's folder is called.
"""
import pathlib
import sys
import types

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = PACK_ROOT.parent / "shared" / "data"  # all of the shared real data (benchmarks, demos)
TEST_DATA = PACK_ROOT / "tests" / "data"  # the few real files the tests read, in the repository (see its SOURCES.md)


def register_pack(name: str = "vcut") -> None:
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(PACK_ROOT)]
        package.__file__ = str(PACK_ROOT / "__init__.py")
        sys.modules[name] = package
