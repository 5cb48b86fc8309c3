"""Test setup: the pack is importable as `vcut` (see bench/pack_import.py); TEST_DATA is tests/data (real photos and
clips, see tests/data/SOURCES.md); helper modules in tests/ (svd_helpers) are importable by name."""
import pathlib
import sys

TESTS = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent / "bench"), str(TESTS)]  # pack_import, and shared test helpers
from pack_import import PACK_ROOT, TEST_DATA, register_pack  # noqa: E402  (after the sys.path / package setup above)

register_pack()
__all__ = ["PACK_ROOT", "TEST_DATA"]
