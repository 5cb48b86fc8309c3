"""ComfyUI UI workflow (what the browser saves) -> API prompt (what ComfyUI's executor runs).

Done the way ComfyUI's frontend does it in `graphToPrompt` (comfyui-frontend-package 1.35):
- each widget of a node is built from the node definition (INPUT_TYPES: required, then optional); the frontend adds
  a "control_after_generate" widget after an INT named seed / noise_seed (or any INT/FLOAT with the
  control_after_generate option), a control widget plus a filter widget after a COMBO with that option, and an
  upload widget at the end of the required inputs of nodes with an image/video upload combo. Those extra widgets
  hold a value in `widgets_values` but are not serialised into the prompt;
- widget values are written first, links then overwrite them ([origin id, origin slot]);
- virtual nodes (Note, MarkdownNote, Reroute, PrimitiveNode) are not executed: a Reroute is followed to its source,
  a PrimitiveNode's value is inlined into the input it feeds;
- muted nodes (mode 2) are left out, and inputs linked to them are dropped; bypassed nodes (mode 4) are left out and
  an input linked to one is linked to the bypassed node's input of the matching type instead.
Pure Python: no ComfyUI import. Node definitions come from the caller (ComfyUI's NODE_CLASS_MAPPINGS).
"""
from __future__ import annotations

MUTED, BYPASSED = 2, 4
VIRTUAL_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "MARKDOWN"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
CONTROL = None  # a widget slot whose value the frontend does not send (control_after_generate, filter, upload)


class WorkflowError(ValueError):
    """The workflow cannot be converted (unknown node type, broken link, subgraph...)."""


def is_api_prompt(data) -> bool:
    """True for an API-format prompt: {id: {"class_type": ..., "inputs": {...}}}."""
    return (isinstance(data, dict) and "nodes" not in data and len(data) > 0
            and all(isinstance(v, dict) and "class_type" in v for v in data.values()))


def widget_slots(input_types: dict) -> list:
    """Names of a node's widgets in the order the frontend creates them; CONTROL marks unsent extra widgets."""
    slots = []
    for section in ("required", "optional"):
        has_upload = False
        for name, spec in (input_types.get(section) or {}).items():
            typ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
            opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
            is_combo = isinstance(typ, (list, tuple)) or typ == "COMBO"
            if not (is_combo or (isinstance(typ, str) and typ in WIDGET_TYPES)) or opts.get("forceInput"):
                continue
            slots.append(name)
            if typ == "INT" and opts.get("control_after_generate", name in ("seed", "noise_seed")):
                slots.append(CONTROL)  # frontend useIntWidget: control_after_generate ?? name in [seed, noise_seed]
            elif typ == "FLOAT" and opts.get("control_after_generate"):
                slots.append(CONTROL)
            elif is_combo and opts.get("control_after_generate"):
                slots += [CONTROL, CONTROL]  # control widget and its control_filter_list widget
            if is_combo and any(opts.get(key) for key in UPLOAD_OPTIONS):
                has_upload = True
            if section == "required" and opts.get("audio_upload"):
                has_upload = True
        if section == "required" and has_upload:
            slots.append(CONTROL)  # Comfy.UploadImage adds `upload` after the required inputs (serialize: false)
    return slots


def widget_defaults(input_types: dict) -> dict:
    """Default value of each widget (the frontend's value for a widget missing from widgets_values)."""
    defaults = {}
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            typ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
            opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
            if "default" in opts:
                defaults[name] = opts["default"]
            elif isinstance(typ, (list, tuple)) and typ:
                defaults[name] = typ[0]
            elif typ == "COMBO" and opts.get("options"):
                defaults[name] = opts["options"][0]
    return defaults


def _type_match(a, b) -> bool:
    """LiteGraph.isValidConnection: equal, a wildcard, or overlapping comma-separated type lists."""
    a, b = str(a or "*").upper(), str(b or "*").upper()
    if a == b or a == "*" or b == "*":
        return True
    return bool(set(a.split(",")) & set(b.split(",")))


def _links(workflow: dict) -> dict:
    """link id -> (origin id, origin slot, target id, target slot, type); accepts list (v0.4) and dict (v1) links."""
    out = {}
    for link in workflow.get("links") or []:
        if isinstance(link, dict):
            out[link["id"]] = (link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                               link.get("type"))
        else:
            out[link[0]] = tuple(link[1:6])
    return out


def ui_to_api(workflow: dict, node_classes, display_names=None) -> dict:
    """Convert a UI workflow (or pass an API prompt through) into an API prompt.

    node_classes: mapping class_type -> node class with INPUT_TYPES() (ComfyUI's nodes.NODE_CLASS_MAPPINGS);
    display_names: class_type -> display name (nodes.NODE_DISPLAY_NAME_MAPPINGS), the title of an untitled node.
    Raises WorkflowError naming the node when a type is unknown or the graph is malformed."""
    if is_api_prompt(workflow):
        return {str(k): {**v, "inputs": dict(v.get("inputs", {}))} for k, v in workflow.items()}
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise WorkflowError("not a ComfyUI workflow: expected a UI workflow with a 'nodes' list, "
                            "or an API prompt {id: {'class_type': ..., 'inputs': ...}}")
    subgraphs = {s.get("id") for s in (workflow.get("definitions") or {}).get("subgraphs", [])}
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = _links(workflow)
    unknown = sorted({(n["type"], n["id"]) for n in nodes.values()
                      if n["type"] not in VIRTUAL_TYPES and n.get("mode", 0) not in (MUTED, BYPASSED)
                      and n["type"] not in node_classes}, key=str)
    if unknown:
        kinds = {t for t, _ in unknown}
        if kinds & subgraphs:
            raise WorkflowError("subgraph nodes are not supported: unpack the subgraphs in the editor first")
        listed = ", ".join(f"{t} (node {i})" for t, i in unknown)
        raise WorkflowError(f"unknown node type(s): {listed}; install the custom node pack that provides them")

    def resolve(node, index, seen=()):
        """What node.inputs[index] receives: ("link", id, slot), ("value", v) or None (unconnected)."""
        link_id = node["inputs"][index].get("link")
        if link_id is None:
            return None
        if link_id not in links:
            raise WorkflowError(f"node {node['id']} ({node['type']}) input "
                                f"'{node['inputs'][index]['name']}' refers to link {link_id}, which does not exist")
        origin_id, origin_slot, _, _, link_type = links[link_id]
        parent = nodes.get(origin_id)
        if parent is None:
            raise WorkflowError(f"link {link_id} comes from node {origin_id}, which does not exist")
        if origin_id in seen:
            raise WorkflowError(f"link {link_id}: the reroutes/bypassed nodes form a loop at node {origin_id}")
        seen = (*seen, origin_id)
        if parent["type"] == "PrimitiveNode":
            values = parent.get("widgets_values") or []
            if not values:
                raise WorkflowError(f"PrimitiveNode {origin_id} has no value")
            return ("value", values[0])
        if parent["type"] == "Reroute":
            return resolve(parent, 0, seen) if parent.get("inputs") else None
        if parent["type"] in VIRTUAL_TYPES:
            return None
        if parent.get("mode", 0) == BYPASSED:
            slot = _bypass_slot(parent, origin_slot, link_type)
            return None if slot < 0 else resolve(parent, slot, seen)
        return ("link", origin_id, origin_slot)

    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_TYPES or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        input_types = node_classes[node["type"]].INPUT_TYPES()
        inputs = {}
        values = node.get("widgets_values")
        if isinstance(values, dict):  # some nodes save their widgets by name
            inputs.update({k: _wrap(v) for k, v in values.items()})
        else:
            values = list(values or [])
            defaults = widget_defaults(input_types)
            for i, name in enumerate(widget_slots(input_types)):
                if name is CONTROL:
                    continue
                if i < len(values):
                    inputs[name] = _wrap(values[i])
                elif name in defaults:
                    inputs[name] = _wrap(defaults[name])
        for i, slot in enumerate(node.get("inputs") or []):
            source = resolve(node, i)
            if source is None:
                continue
            inputs[slot["name"]] = _wrap(source[1]) if source[0] == "value" else [str(source[1]), int(source[2])]
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"],
                                   "_meta": {"title": node.get("title") or (display_names or {}).get(node["type"])
                                             or node["type"]}}
    for entry in prompt.values():  # the frontend drops inputs linked to nodes that are not in the prompt
        for name, value in list(entry["inputs"].items()):
            if _is_link(value) and value[0] not in prompt:
                del entry["inputs"][name]
    return prompt


def _wrap(value):
    """The frontend sends a list-valued widget as {"__value__": list}, so it is not read as a link."""
    return {"__value__": value} if isinstance(value, list) else value


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _bypass_slot(node, slot, link_type) -> int:
    """The input a bypassed node passes through to its output `slot` (frontend ExecutableNodeDTO rule):
    the input with the same index if its type fits, else the first input of the same type, else the first that fits."""
    inputs = node.get("inputs") or []
    outputs = node.get("outputs") or []
    out_type = outputs[slot]["type"] if slot < len(outputs) else link_type
    if link_type in ("*", "", None):
        return slot if len(inputs) > slot else 0
    if slot < len(inputs) and _type_match(inputs[slot].get("type"), out_type) and \
            _type_match(inputs[slot].get("type"), link_type):
        return slot
    for i, inp in enumerate(inputs):
        if inp.get("type") == link_type:
            return i
    for i, inp in enumerate(inputs):
        if _type_match(inp.get("type"), out_type) and _type_match(inp.get("type"), link_type):
            return i
    return -1
