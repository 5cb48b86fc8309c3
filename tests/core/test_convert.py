"""The UI -> API converter (runner/convert.py) against the newest ComfyUI's node schema (0.38.1, read from its sources:
tests/fixtures/comfyui_0.38.1_video_nodes.json) and workflows as frontend 1.58 saves them: DynamicCombo widgets
(SaveVideo's format with its nested codec / encoding / crf), the new CreateVideo / LoadVideo widgets, and workflows
whose widgets do not fit (named node, widget and values). The same converter on ComfyUI 0.8.0's real node classes
is tested in tests/integration/test_workflows.py."""
import json
import pathlib

import pytest

from vcut.runner.common import apply_overrides
from vcut.runner.convert import WorkflowError, find_cycle, input_specs, takes_value, ui_to_api, widget_slots

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"
WORKFLOWS = pathlib.Path(__file__).resolve().parents[2] / "workflows"


def newest_node_classes():
    """Node classes whose INPUT_TYPES() is 0.38.1's, from the fixture."""
    schema = json.loads((FIXTURES / "comfyui_0.38.1_video_nodes.json").read_text())
    return {name: type(name, (), {"INPUT_TYPES": staticmethod(lambda spec=spec["input"]: spec)})
            for name, spec in schema.items() if not name.startswith("_")}


def saved_by_frontend_158():
    return json.loads((FIXTURES / "video_roundtrip_frontend_1.58.json").read_text())


def test_dynamic_combo_widgets_follow_their_combo_depth_first():
    save_video = newest_node_classes()["SaveVideo"].INPUT_TYPES()
    assert widget_slots(save_video) == ["filename_prefix", "format", "format.codec", "codec"]  # defaults: auto
    assert widget_slots(save_video, ["x", "mp4", "h264", "re-encode", 18, "av1", "auto"]) == [
        "filename_prefix", "format", "format.codec", "format.codec.encoding", "format.codec.encoding.crf",
        "codec", "codec.encoding"]


def test_a_workflow_saved_by_frontend_158_converts_to_the_prompt_comfyui_038_reads():
    notes = []
    prompt = ui_to_api(saved_by_frontend_158(), newest_node_classes(), notes=notes)
    assert prompt["4"]["inputs"] == {
        "filename_prefix": "vcut/loop", "format": "mp4", "format.codec": "h264",
        "format.codec.encoding": "re-encode", "format.codec.encoding.crf": 18, "codec": "auto", "video": ["3", 0]}
    assert prompt["4"]["_meta"]["title"] == "Save loop"
    assert prompt["3"]["inputs"] == {"fps": ["2", 2], "bit_depth": "auto", "color_space": "sRGB", "codec": "none",
                                     "images": ["2", 0]}  # a linked widget: the link wins over its saved value
    assert prompt["2"]["inputs"] == {"video": ["1", 0]}
    assert prompt["1"]["inputs"] == {"file": "example.mp4", "edit": {  # the upload widget's value is not sent
        "trim": {"start_time": 0.0, "duration": 0.0}, "crop": {"x": 0, "y": 0, "width": 0, "height": 0}}}
    assert notes == [("node 1 (LoadVideo): the workflow has no value for widget 'edit' (saved before this ComfyUI's "
                      "LoadVideo had it): using its default {'trim': {'start_time': 0.0, 'duration': 0.0}, "
                      "'crop': {'x': 0, 'y': 0, 'width': 0, 'height': 0}}")]


def test_the_shipped_workflow_video_nodes_convert_on_the_newest_schema_with_their_new_widgets_defaulted():
    """workflows/svd_vcut_img2vid.json (saved against 0.8.0's plain format / codec combos): on 0.38.1 its values
    land on format and format.codec, and the widgets it predates get their defaults, with a note for each."""
    shipped = json.loads((WORKFLOWS / "svd_vcut_img2vid.json").read_text())
    video_nodes = [n for n in shipped["nodes"] if n["type"] in ("CreateVideo", "SaveVideo")]
    for node in video_nodes:
        for slot in node.get("inputs") or []:
            if node["type"] == "CreateVideo":
                slot["link"] = None  # its image source is not part of this two-node graph
    link = [entry for entry in shipped["links"] if entry[1] in {n["id"] for n in video_nodes}
            and entry[3] in {n["id"] for n in video_nodes}]
    notes = []
    prompt = ui_to_api({"nodes": video_nodes, "links": link}, newest_node_classes(), notes=notes)
    save = next(k for k, v in prompt.items() if v["class_type"] == "SaveVideo")
    create = next(k for k, v in prompt.items() if v["class_type"] == "CreateVideo")
    assert prompt[save]["inputs"] == {"filename_prefix": "video/vcut_svd", "format": "auto", "format.codec": "auto",
                                      "codec": "auto", "video": [create, 0]}
    assert prompt[create]["inputs"] == {"fps": 6.0, "bit_depth": "auto", "color_space": "sRGB", "codec": "none"}
    assert [n.split("'")[1] for n in notes] == ["bit_depth", "color_space", "codec", "codec"]
    assert all("saved before this ComfyUI's" in n for n in notes)


def test_widget_values_that_do_not_fit_name_the_node_the_widget_and_what_was_expected():
    classes = newest_node_classes()
    workflow = saved_by_frontend_158()
    save = workflow["nodes"][3]
    save["widgets_values"] = ["vcut/loop", "webm", "h264", "auto", "auto"]  # webm offers auto and av1 only
    with pytest.raises(WorkflowError, match=r"node 4 \(SaveVideo, 'Save loop'\): widget 'format.codec' is 'h264', "
                                            r"which this ComfyUI's SaveVideo does not offer \(its options: 'auto', "
                                            r"'av1'\)"):
        ui_to_api(workflow, classes)
    save["widgets_values"] = ["vcut/loop", "auto", "auto", "auto", 5, "surplus"]
    with pytest.raises(WorkflowError) as error:
        ui_to_api(workflow, classes)
    message = str(error.value)
    assert message.startswith("node 4 (SaveVideo, 'Save loop'): the workflow holds 6 widget values, but this "
                              "ComfyUI's SaveVideo takes 4 (filename_prefix, format, format.codec, codec)")
    assert "the values 5, 'surplus' after them have no widget here" in message
    notes = []
    lenient = ui_to_api(workflow, classes, notes=notes, strict=False)  # run_workflow.py --lenient
    assert lenient["4"]["inputs"]["codec"] == "auto" and notes[-1].endswith("after them have no widget here: "
                                                                           "they are left out")
    save["widgets_values"] = ["vcut/loop", "auto", "auto", "auto", None]  # a serialize:false widget's null hole
    assert ui_to_api(workflow, classes)["4"]["inputs"]["codec"] == "auto"


def test_overrides_reach_the_inputs_of_the_chosen_dynamic_option():
    classes = newest_node_classes()
    prompt = ui_to_api(saved_by_frontend_158(), classes)
    assert "format.codec.encoding.crf" in input_specs(classes["SaveVideo"].INPUT_TYPES(), prompt["4"]["inputs"])
    done = apply_overrides(prompt, ["SaveVideo.format.codec.encoding.crf=20", "Save loop.format=mkv",
                                    "4.filename_prefix=runs/loop"], classes)
    assert done == ["node 4 (SaveVideo).format.codec.encoding.crf = 20", "node 4 (SaveVideo).format = 'mkv'",
                    "node 4 (SaveVideo).filename_prefix = 'runs/loop'"]
    assert prompt["4"]["inputs"]["format.codec.encoding.crf"] == 20 and prompt["4"]["inputs"]["format"] == "mkv"


def test_a_cycle_of_links_is_named_node_by_node():
    prompt = {"1": {"class_type": "A", "inputs": {"x": ["3", 0], "n": 2}},
              "2": {"class_type": "B", "inputs": {"x": ["1", 0]}},
              "3": {"class_type": "C", "inputs": {"x": ["2", 0], "y": ["4", 0]}},
              "4": {"class_type": "D", "inputs": {}}}
    cycle = find_cycle(prompt)
    assert sorted(cycle) == ["1", "2", "3"]
    for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=False):  # each node feeds the next
        assert prompt[b]["inputs"]["x"][0] == a
    del prompt["1"]["inputs"]["x"]
    assert find_cycle(prompt) is None
    assert find_cycle({"1": {"class_type": "A", "inputs": {"x": ["1", 0]}}}) == ["1"]


def test_inputs_that_take_values_and_inputs_that_take_links():
    save_video = newest_node_classes()["SaveVideo"].INPUT_TYPES()["required"]
    assert takes_value(save_video["filename_prefix"]) and takes_value(save_video["format"])
    assert not takes_value(save_video["video"])


# ---- graphs at their limits: long chains, odd ids (the shape checks themselves: tests/core/test_workflow_files.py) --

class Image:
    """A node taking and giving an IMAGE (ImageInvert's definition)."""
    RETURN_TYPES = ("IMAGE",)

    @staticmethod
    def INPUT_TYPES():  # noqa: N802 (ComfyUI's name)
        return {"required": {"image": ("IMAGE",)}}


class Source:
    RETURN_TYPES = ("IMAGE", "MASK")

    @staticmethod
    def INPUT_TYPES():  # noqa: N802
        return {"required": {"image": (["a.png"], {"image_upload": True})}}


CHAIN = {"Image": Image, "Source": Source}


def chain_workflow(length: int, middle: str = "Reroute", mode: int = 0) -> dict:
    """Source (id 1) -> `length` nodes of type `middle` (ids 2...) -> Image, each fed by the one before."""
    nodes = [{"id": 1, "type": "Source", "widgets_values": ["a.png", "image"],
              "outputs": [{"name": "IMAGE", "type": "IMAGE"}, {"name": "MASK", "type": "MASK"}]}]
    links = []
    for i in range(2, length + 3):
        node_type = "Image" if i == length + 2 else middle
        nodes.append({"id": i, "type": node_type, "mode": mode if i <= length + 1 else 0,
                      "inputs": [{"name": "image" if node_type == "Image" else "", "type": "IMAGE", "link": i}],
                      "outputs": [{"name": "IMAGE", "type": "IMAGE"}]})
        links.append([i, i - 1, 0, i, 0, "IMAGE"])
    return {"nodes": nodes[::-1], "links": links}


def test_1500_chained_reroutes_resolve_to_their_source_without_recursion():
    prompt = ui_to_api(chain_workflow(1500), CHAIN)
    assert prompt == {"1502": {"inputs": {"image": ["1", 0]}, "class_type": "Image", "_meta": {"title": "Image"}},
                      "1": {"inputs": {"image": "a.png"}, "class_type": "Source", "_meta": {"title": "Source"}}}


def test_1500_chained_bypassed_nodes_pass_their_input_through():
    prompt = ui_to_api(chain_workflow(1500, "Image", mode=4), CHAIN)
    assert set(prompt) == {"1", "1502"} and prompt["1502"]["inputs"] == {"image": ["1", 0]}
    muted = ui_to_api(chain_workflow(1500, "Image", mode=2), CHAIN)
    assert muted["1502"]["inputs"] == {}  # fed by a muted node: the input is dropped, as the frontend does


def test_a_loop_of_reroutes_is_named():
    workflow = chain_workflow(3)
    workflow["links"].append([99, 4, 0, 2, 0, "IMAGE"])  # the first reroute fed by the last
    next(n for n in workflow["nodes"] if n["id"] == 2)["inputs"][0]["link"] = 99
    with pytest.raises(WorkflowError, match="the reroutes/bypassed nodes form a loop at node"):
        ui_to_api(workflow, CHAIN)


def test_a_bypassed_node_without_inputs_feeds_nothing():
    workflow = chain_workflow(1, "Source", mode=4)
    bypassed = next(n for n in workflow["nodes"] if n["id"] == 2)
    bypassed["inputs"], bypassed["widgets_values"] = [], ["a.png", "image"]
    workflow["links"][1][-1] = "*"  # a wildcard link: the pass-through slot falls back to input 0, which is missing
    assert ui_to_api(workflow, CHAIN)["3"]["inputs"] == {}


def test_text_and_negative_node_ids_keep_their_links():
    """LiteGraph's node ids are numbers or texts; a link names its nodes either way ("5" and 5 are one node, as in
    the frontend's node map)."""
    workflow = chain_workflow(1, "Image")
    ids = {1: "source", 2: -7, 3: "3"}
    for node in workflow["nodes"]:
        node["id"] = ids[node["id"]]
    workflow["links"] = [[2, "source", 0, -7, 0, "IMAGE"], [3, -7, 0, 3, 0, "IMAGE"]]
    prompt = ui_to_api(workflow, CHAIN)
    assert prompt["3"]["inputs"] == {"image": ["-7", 0]} and prompt["-7"]["inputs"] == {"image": ["source", 0]}
    assert find_cycle(prompt) is None


def test_the_cycle_check_walks_a_1500_node_api_chain_in_reverse_order():
    prompt = {"1": {"class_type": "Source", "inputs": {}}}
    for i in range(2, 1502):
        prompt[str(i)] = {"class_type": "Image", "inputs": {"image": [str(i - 1), 0]}}
    prompt = dict(reversed(prompt.items()))  # the first node visited is the end of the chain
    assert find_cycle(prompt) is None
    prompt["1"]["inputs"]["image"] = ["1501", 0]  # the source fed by the last node: one cycle of 1501 nodes
    cycle = find_cycle(prompt)
    assert sorted(cycle, key=int) == [str(i) for i in range(1, 1502)]
    for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=False):  # each node feeds the next
        assert prompt[b]["inputs"]["image"][0] == a


def test_dynamic_combo_options_nested_past_any_real_node_are_refused_with_the_node_named():
    spec = {"required": {"leaf": ("INT", {"default": 1})}}
    for _ in range(20):
        spec = {"required": {"c": ("COMFY_DYNAMICCOMBO_V3", {"options": [{"key": "k", "inputs": spec}]})}}
    deep = type("Deep", (), {"INPUT_TYPES": staticmethod(lambda: spec)})
    with pytest.raises(WorkflowError, match=r"node 1 \(Deep\): widget 'c(\.c)+': the node definition nests "
                                            r"DynamicCombo options more than 16 deep"):
        ui_to_api({"nodes": [{"id": 1, "type": "Deep", "widgets_values": ["k"] * 21}], "links": []}, {"Deep": deep})
    assert len(input_specs(spec, {})) == 17  # the names stop there (--set): no recursion past the cap


def test_subgraph_definitions_of_any_shape_give_the_subgraph_message_or_the_unknown_type():
    uuid = "0f0e0d0c-0b0a-4908-8706-050403020100"
    workflow = {"nodes": [{"id": 1, "type": uuid, "inputs": [], "outputs": []}], "links": [],
                "definitions": {"subgraphs": [{"id": uuid, "nodes": []}, 7, {"id": ["x"]}]}}
    with pytest.raises(WorkflowError, match="subgraph nodes are not supported: unpack the subgraphs"):
        ui_to_api(workflow, CHAIN)
    for broken in ([], {"subgraphs": {"id": uuid}}, {"subgraphs": None}, "x"):
        workflow["definitions"] = broken
        with pytest.raises(WorkflowError, match=f"unknown node type\\(s\\): {uuid} \\(node 1\\)"):
            ui_to_api(workflow, CHAIN)


def test_validation_results_of_any_shape_are_lines():
    """A server's /prompt refusal is read as ComfyUI's validate_prompt result; parts of another shape are shown as
    they are, never a traceback."""
    from vcut.runner.common import format_validation
    prompt = {"2": {"class_type": "KSampler", "inputs": {}, "_meta": {"title": "Sampler"}}}
    assert format_validation("bad prompt", ["x"], prompt) == "workflow failed validation: bad prompt"
    text = format_validation({"message": "failed"}, {"2": "broken", "3": {"errors": "one"},
                                                     "4": {"class_type": "X", "errors": [5, {"message": "m"}]}}, prompt)
    assert text.splitlines() == ["workflow failed validation: failed", "  node 2 (?, 'Sampler'):", "    - broken",
                                 "  node 3 (?):", "    - one", "  node 4 (X):", "    - 5", "    - m"]


def test_a_primitive_node_is_read_only_where_it_feeds_an_input():
    workflow = chain_workflow(1, "PrimitiveNode")
    primitive = next(n for n in workflow["nodes"] if n["id"] == 2)
    primitive["inputs"], primitive["widgets_values"] = [], {"value": "x"}
    workflow["links"] = workflow["links"][1:]
    with pytest.raises(WorkflowError, match=r"node 2 \(PrimitiveNode\) feeds node 3 \(Image\) input 'image' but holds "
                                            r"no value: its widgets_values is an object \(\{'value': 'x'\}\)"):
        ui_to_api(workflow, CHAIN)
    workflow["links"], primitive["widgets_values"] = [], []  # unlinked and empty, as the editor saves a new one
    next(n for n in workflow["nodes"] if n["id"] == 3)["inputs"][0]["link"] = None
    assert set(ui_to_api(workflow, CHAIN)) == {"1", "3"}


def test_a_node_definition_of_another_shape_is_named():
    """Node definitions come from ComfyUI or a server's /object_info (a broken custom node can give anything)."""
    for spec in ([], {"required": ["x"]}, {"required": {"c": ("COMFY_DYNAMICCOMBO_V3", {"options": [7]})}}):
        odd = type("Odd", (), {"INPUT_TYPES": staticmethod(lambda spec=spec: spec)})
        with pytest.raises(WorkflowError, match=r"node 1 \(Odd\): this ComfyUI's definition of Odd \(its INPUT_TYPES\) "
                                                r"is not one the frontend could build widgets from: AttributeError"):
            ui_to_api({"nodes": [{"id": 1, "type": "Odd", "widgets_values": ["k"]}]}, {"Odd": odd})
