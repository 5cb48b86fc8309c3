"""The example workflows as a ComfyUI user opens them: laid out without overlaps, links left to right, groups that
hold their nodes, one Note naming the checkpoint and every pack node, and a thumbnail beside each (the checks of
docs/make_pictures.py --check, which renders the thumbnails)."""
import copy
import importlib.util
import json

import pytest
from pack_import import PACK_ROOT

WORKFLOWS = sorted((PACK_ROOT / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def pictures():
    spec = importlib.util.spec_from_file_location("vcut_make_pictures", PACK_ROOT / "docs" / "make_pictures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_example_workflows():
    assert len(WORKFLOWS) >= 7


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_layout_and_thumbnail(pictures, path):
    workflow = json.loads(path.read_text())
    assert pictures.check_workflow(workflow, pictures.pack_display_names()) == []
    thumbnail = path.with_suffix(".jpg")
    assert thumbnail.is_file() and thumbnail.read_bytes()[:3] == b"\xff\xd8\xff"


def test_the_checker_finds_an_overlap(pictures):
    workflow = json.loads(WORKFLOWS[0].read_text())
    broken = copy.deepcopy(workflow)
    first, second = broken["nodes"][0], broken["nodes"][1]
    second["pos"] = list(first["pos"])
    assert pictures.check_workflow(broken, pictures.pack_display_names())
