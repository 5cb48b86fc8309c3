"""Broken workflow files through run_workflow.py as users run it (a subprocess): every malformed shape of the UI and
API formats, JSON nested deeper than Python's reader goes, NaN, a byte-order mark. Each is refused before ComfyUI
starts or a server is asked (these runs name no ComfyUI that exists, and a --server that does not answer), with
exit status 2 and one message naming the node (id, type) and the field, never a Python traceback. The cases that
need node definitions (long reroute chains, long API chains, output slots) run on real ComfyUI in
tests/integration/test_runner_limits.py."""
import copy
import json
import pathlib
import subprocess
import sys

import pytest

from vcut.runner.convert import MAX_NESTING, WorkflowError, check_workflow

RUNNER = pathlib.Path(__file__).resolve().parents[2] / "run_workflow.py"


def ui_workflow() -> dict:
    """LoadImage -> SaveImage, as the frontend saves it (version 0.4 links), with a group."""
    return {
        "last_node_id": 2, "last_link_id": 1, "version": 0.4,
        "groups": [{"id": 1, "title": "Group", "bounding": [0, 0, 500, 300]}],
        "nodes": [
            {"id": 1, "type": "LoadImage", "mode": 0, "inputs": [], "widgets_values": ["photo.png", "image"],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK"}]},
            {"id": 2, "type": "SaveImage", "mode": 0, "title": "Save", "widgets_values": ["out"], "outputs": [],
             "inputs": [{"name": "images", "type": "IMAGE", "link": 1}]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    }


def api_prompt() -> dict:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "out"},
                  "_meta": {"title": "Save"}}}


def edited(make, change):
    data = copy.deepcopy(make())
    change(data)
    return data


def nested(depth: int) -> list:
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


def ui_node(index, **fields):
    """An edit of ui_workflow()'s node `index`: fields set, or removed where the value is REMOVE."""
    def change(workflow):
        node = workflow["nodes"][index]
        for key, value in fields.items():
            if value is REMOVE:
                del node[key]
            else:
                node[key] = value
    return edited(ui_workflow, change)


REMOVE = object()

# (case, file content, what the message must hold)
CASES = [
    # the file
    ("JSON nested 5000 deep", "[" * 5000 + "]" * 5000, ["nested thousands deep"]),
    ("an object nested 5000 deep", '{"a":' * 5000 + "1" + "}" * 5000, ["nested thousands deep"]),
    ("widget values nested 500 deep", ui_node(0, widgets_values=[nested(500)]),
     [f"nested more than {MAX_NESTING} deep", "at nodes[0].widgets_values[0][0]"]),
    ("NaN", '{"1": {"class_type": "SaveImage", "inputs": {"x": NaN}}}', ["not valid JSON", "NaN"]),
    ("not JSON", '{"nodes": [', ["not valid JSON"]),
    ("a list", [ui_workflow()], ["not a ComfyUI workflow", "the file holds a list"]),
    ("a number", 7, ["not a ComfyUI workflow", "the file holds a number (7)"]),
    ("an empty object", {}, ["not a ComfyUI workflow"]),
    ("neither format", {"prompt": api_prompt()}, ["not a ComfyUI workflow"]),
    # UI format: the node list and the nodes
    ("nodes an object", edited(ui_workflow, lambda w: w.update(nodes={"1": w["nodes"][0]})),
     ["'nodes' is an object", "expected a list of nodes"]),
    ("a node that is a number", edited(ui_workflow, lambda w: w["nodes"].append(7)),
     ["nodes[2] is a number (7)", "not a node"]),
    ("a node that is null", edited(ui_workflow, lambda w: w["nodes"].insert(0, None)), ["nodes[0] is null"]),
    ("a node without id", ui_node(1, id=REMOVE), ["nodes[1] (SaveImage): it has no 'id'"]),
    ("a float id", ui_node(1, id=2.5), ["nodes[1] (SaveImage): its id is a number (2.5)", "whole number or a text"]),
    ("a true id", ui_node(1, id=True), ["nodes[1] (SaveImage): its id is true/false"]),
    ("a null id", ui_node(1, id=None), ["nodes[1] (SaveImage): its id is null"]),
    ("a list id", ui_node(1, id=[2]), ["nodes[1] (SaveImage): its id is a list ([2])"]),
    ("an empty text id", ui_node(1, id=""), ["nodes[1] (SaveImage): its id is a text ('')"]),
    ("two nodes with one id", ui_node(1, id="1"), ["nodes[0] and nodes[1] have the same id '1'"]),
    ("a node without type", ui_node(1, type=REMOVE), ["node 2: it has no 'type'"]),
    ("a type that is a list", ui_node(1, type=["SaveImage"]), ["node 2: 'type' is a list (['SaveImage'])"]),
    ("a type that is a number", ui_node(1, type=5), ["node 2: 'type' is a number (5)"]),
    ("a title that is a number", ui_node(1, title=3), ["node 2 (SaveImage): 'title' is a number (3)"]),
    ("a mode that is a text", ui_node(1, mode="bypass"), ["node 2 (SaveImage): 'mode' is a text ('bypass')",
                                                          "4 (bypass)"]),
    ("a mode out of range", ui_node(1, mode=9), ["node 2 (SaveImage): 'mode' is a number (9)"]),
    ("widgets_values a text", ui_node(1, widgets_values="out"),
     ["node 2 (SaveImage): 'widgets_values' is a text ('out')"]),
    ("widgets_values a number", ui_node(1, widgets_values=1), ["node 2 (SaveImage): 'widgets_values' is a number"]),
    # UI format: slots
    ("inputs an object", ui_node(1, inputs={"images": 1}), ["node 2 (SaveImage): 'inputs' is an object"]),
    ("an inputs entry that is a text", ui_node(1, inputs=["images"]),
     ["node 2 (SaveImage): inputs[0] is a text ('images')", "expected a slot object"]),
    ("an input without name", ui_node(1, inputs=[{"type": "IMAGE", "link": 1}]),
     ["node 2 (SaveImage): inputs[0]'s 'name' is null"]),
    ("an input link that is a text", ui_node(1, inputs=[{"name": "images", "type": "IMAGE", "link": "1"}]),
     ["node 2 (SaveImage): input 'images': its link is a text ('1')"]),
    ("an input link that is a list", ui_node(1, inputs=[{"name": "images", "type": "IMAGE", "link": [1, 0]}]),
     ["node 2 (SaveImage): input 'images': its link is a list"]),
    ("outputs a text", ui_node(0, outputs="IMAGE"), ["node 1 (LoadImage): 'outputs' is a text ('IMAGE')"]),
    ("an outputs entry that is a number", ui_node(0, outputs=[3]), ["node 1 (LoadImage): outputs[0] is a number"]),
    # UI format: links
    ("links an object", edited(ui_workflow, lambda w: w.update(links={"1": [1, 1, 0, 2, 0, "IMAGE"]})),
     ["'links' is an object", "expected a list of links"]),
    ("a link that is a number", edited(ui_workflow, lambda w: w["links"].append(3)),
     ["links[1] is a number (3)", "expected a link [id, origin node id, origin slot"]),
    ("a link too short", edited(ui_workflow, lambda w: w["links"].__setitem__(0, [1, 1, 0])),
     ["links[0] is a list ([1, 1, 0])"]),
    ("a link whose id is a text", edited(ui_workflow, lambda w: w["links"][0].__setitem__(0, "1")),
     ["links[0] (link '1'): its id is a text ('1')"]),
    ("a link whose origin is a list", edited(ui_workflow, lambda w: w["links"][0].__setitem__(1, [1])),
     ["links[0] (link 1): its origin id is a list ([1])", "expected a node id"]),
    ("a link whose slot is a text", edited(ui_workflow, lambda w: w["links"][0].__setitem__(2, "0")),
     ["links[0] (link 1): its origin slot is a text ('0')", "a slot number"]),
    ("a link whose slot is negative", edited(ui_workflow, lambda w: w["links"][0].__setitem__(4, -1)),
     ["links[0] (link 1): its target slot is a number (-1)"]),
    ("a link object without origin", edited(ui_workflow, lambda w: w["links"].__setitem__(
        0, {"id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"})),
     ["links[0] is an object", "expected a link"]),
    # API format
    ("an API node that is a number", edited(api_prompt, lambda p: p.update({"3": 7})),
     ["node 3: a number (7)", "expected a node {'class_type'"]),
    ("an API node without class_type", edited(api_prompt, lambda p: p["2"].pop("class_type")),
     ["node 2: it has no 'class_type'"]),
    ("class_type a list", edited(api_prompt, lambda p: p["2"].update(class_type=["SaveImage"])),
     ["node 2: 'class_type' is a list (['SaveImage'])"]),
    ("inputs a list", edited(api_prompt, lambda p: p["2"].update(inputs=[["1", 0], "out"])),
     ["node 2 (SaveImage): 'inputs' is a list", "expected an object {input name: value"]),
    ("_meta a list", edited(api_prompt, lambda p: p["2"].update(_meta=["Save"])),
     ["node 2 (SaveImage): '_meta' is a list"]),
    ("a title that is an object", edited(api_prompt, lambda p: p["2"].update(_meta={"title": {}})),
     ["node 2 (SaveImage): its title is an object"]),
    ("a link to a node that is not there", edited(api_prompt, lambda p: p["2"]["inputs"].update(images=["9", 0])),
     ["node 2 (SaveImage): input 'images' links to node '9', which is not in the workflow"]),
    ("a link with a number for its node", edited(api_prompt, lambda p: p["2"]["inputs"].update(images=[1, 0])),
     ["node 2 (SaveImage): input 'images' is a list ([1, 0]); a list is a link"]),
    ("a link with a negative slot", edited(api_prompt, lambda p: p["2"]["inputs"].update(images=["1", -1])),
     ["node 2 (SaveImage): input 'images' is a list (['1', -1])"]),
    ("a list of three", edited(api_prompt, lambda p: p["2"]["inputs"].update(images=["1", 0, 0])),
     ["node 2 (SaveImage): input 'images' is a list (['1', 0, 0])", "{'__value__': [...]}"]),
]


def write(folder: pathlib.Path, name: str, content) -> pathlib.Path:
    path = folder / (name.replace(" ", "_") + ".json")
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=120)


def assert_refused(result: subprocess.CompletedProcess, expected: list[str], case: str) -> str:
    """Exit status 2, nothing on stdout, the message alone on stderr (no traceback), holding every expected part."""
    assert result.returncode == 2, (case, result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and result.stdout == "", (case, result.stderr[-2000:])
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, (case, result.stderr[-2000:])
    for part in expected:
        assert part in result.stderr, (case, part, result.stderr)
    return result.stderr


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_a_malformed_workflow_file_is_refused_with_its_node_and_field_named(tmp_path, case):
    _, content, expected = next(c for c in CASES if c[0] == case)
    path = write(tmp_path, case, content)
    message = assert_refused(run(str(path), "--comfyui", str(tmp_path / "no-comfyui")), expected, case)
    assert message.startswith(f"error: cannot run {path}: ") or str(path) in message.split(":")[1], message


@pytest.mark.parametrize("case", ["JSON nested 5000 deep", "a node without id", "a link that is a number",
                                  "an inputs entry that is a text", "class_type a list", "inputs a list"])
def test_the_server_path_refuses_the_same_files_before_it_asks_a_server(tmp_path, case):
    """--server reads the file the same way; the refusal comes before any server is asked (this one would not
    answer), with the same message."""
    _, content, expected = next(c for c in CASES if c[0] == case)
    path = write(tmp_path, case, content)
    local = assert_refused(run(str(path), "--comfyui", str(tmp_path / "no-comfyui")), expected, case)
    remote = run(str(path), "--server", "http://127.0.0.1:9", "--output-dir", str(tmp_path / "out"))
    assert remote.returncode == 2 and remote.stderr == local, (case, remote.stderr[-2000:])
    assert not (tmp_path / "out").exists()  # refused before anything was created


def test_the_library_refuses_the_same_shapes_with_a_workflow_error():
    """ui_to_api (and so the in-process runner and the server client, which both call it) checks the shape
    itself: a caller that did not read the file through load_workflow gets the same message."""
    for case, content, expected in CASES:
        if isinstance(content, str):
            continue  # not JSON: only the file reader meets it
        with pytest.raises(WorkflowError) as error:
            check_workflow(content)
        assert all(part in str(error.value) for part in expected if "nested" not in part), (case, str(error.value))


def test_files_a_browser_or_editor_saves_are_read(tmp_path):
    """A byte-order mark (Windows editors), text ids, negative ids, a group of another shape and v1 link objects
    pass the shape check; (the run then stops only because no ComfyUI is found)."""
    workflow = ui_workflow()
    workflow["nodes"][0]["id"], workflow["nodes"][1]["id"] = "load", -3
    workflow["links"] = [{"id": 1, "origin_id": "load", "origin_slot": 0, "target_id": -3, "target_slot": 0,
                          "type": "IMAGE"}]
    workflow["groups"] = [{"title": 5}]  # groups are not read: the editor's business
    workflow["nodes"][1]["title"] = "Sauvegarde é"
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(workflow, ensure_ascii=False).encode("utf-8"))
    result = run(str(path), "--comfyui", str(tmp_path / "no-comfyui"))
    assert result.returncode == 2 and "no ComfyUI found at" in result.stderr, result.stderr[-2000:]
    check_workflow(workflow)
    check_workflow(api_prompt())
