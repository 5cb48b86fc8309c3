"""ComfyUI UI workflow (what the browser saves) -> API prompt (what ComfyUI's executor runs).

Done the way ComfyUI's frontend does it in `graphToPrompt` (comfyui-frontend-package 1.35 and 1.58):
- each widget of a node is built from the node definition (INPUT_TYPES: required, then optional); the frontend adds
  a "control_after_generate" widget after an INT named seed / noise_seed (or any INT/FLOAT with the
  control_after_generate option), a control widget plus a filter widget after a COMBO with that option, and an
  upload widget at the end of the required inputs of nodes with an image/video upload combo. Those extra widgets
  hold a value in `widgets_values` but are not serialised into the prompt;
- a DynamicCombo (io.DynamicCombo, "COMFY_DYNAMICCOMBO_V3", after ComfyUI 0.8.0: e.g. SaveVideo's `format` in
  0.38.1) is a combo whose chosen option's own inputs become widgets named "<combo>.<input>", inserted right after
  the combo (frontend 1.58 dynamicComboWidget), nested ones depth first; their values follow the combo's value in
  `widgets_values` and go into the prompt under those dotted names, as ComfyUI's get_finalized_class_inputs reads them;
- a workflow whose widget values do not fit this ComfyUI's node (saved with a ComfyUI whose node had other widgets)
  is refused with the node, the widgets and the values named; one that lacks a value for a widget it predates gets
  the widget's default, as the frontend does, and a note says so;
- widget values are written first, links then overwrite them ([origin id, origin slot]);
- virtual nodes (Note, MarkdownNote, Reroute, PrimitiveNode) are not executed: a Reroute is followed to its source,
  a PrimitiveNode's value is inlined into the input it feeds;
- muted nodes (mode 2) are left out, and inputs linked to them are dropped; bypassed nodes (mode 4) are left out and
  an input linked to one is linked to the bypassed node's input of the matching type instead.
Pure Python: no ComfyUI import. Node definitions come from the caller (ComfyUI's NODE_CLASS_MAPPINGS).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

MUTED, BYPASSED = 2, 4
VIRTUAL_TYPES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO", "MARKDOWN"}
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload")
CONTROL = None  # a widget slot whose value the frontend does not send (control_after_generate, filter, upload)
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"  # io.DynamicCombo's type name (newer ComfyUI than 0.8.0)
MISSING = object()  # no value in widgets_values for this widget


class WorkflowError(ValueError):
    """The workflow cannot be converted (unknown node type, broken link, subgraph...)."""


def is_api_prompt(data: object) -> bool:
    """True for an API-format prompt: {id: {"class_type": ..., "inputs": {...}}}."""
    return (isinstance(data, dict) and "nodes" not in data and len(data) > 0
            and all(isinstance(v, dict) and "class_type" in v for v in data.values()))


def _type_and_options(spec: tuple | list | str) -> tuple[str | list | tuple, dict[str, Any]]:
    typ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    return typ, opts


def _is_combo(typ: str | list | tuple) -> bool:
    return isinstance(typ, (list, tuple)) or typ == "COMBO"


def _is_widget(typ: str | list | tuple, opts: dict[str, Any]) -> bool:
    """An input the frontend shows as a widget (its value is in widgets_values), not only as a socket."""
    if opts.get("forceInput"):
        return False
    # socketless: a V3 widget input with no socket (e.g. 0.38.1's VIDEO_EDIT on LoadVideo)
    return (_is_combo(typ) or typ == DYNAMIC_COMBO or (isinstance(typ, str) and typ in WIDGET_TYPES)
            or bool(opts.get("socketless")))


def takes_value(spec: tuple | list | str) -> bool:
    """True for an input that takes a value (a widget), False for one that takes another node's output (a link)."""
    return _is_widget(*_type_and_options(spec)) or bool(_type_and_options(spec)[1].get("forceInput"))


def find_cycle(prompt: dict) -> list[str] | None:
    """The node ids of a cycle of links in an API prompt, in link order (None when it has none): ComfyUI's
    validation only says "Prompt outputs failed validation" for one."""
    state = {}  # node id -> 1 while on the current path, 2 when done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for value in (prompt[node].get("inputs") or {}).values():
            source = value[0] if _is_link(value) else None
            if source not in prompt:
                continue
            if state.get(source) == 1:
                return path[path.index(source):]
            if source not in state:
                found = visit(source, path)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in prompt:
        if node not in state:
            found = visit(node, [])
            if found:
                return found[::-1]  # from a node to the node it feeds
    return None


def _default(typ: str | list | tuple, opts: dict[str, Any]) -> tuple[bool, Any]:
    """(True, value) for the value the frontend gives a new widget, (False, None) when it has none."""
    if "default" in opts:
        return True, opts["default"]
    if isinstance(typ, (list, tuple)) and typ:
        return True, typ[0]
    if typ == "COMBO" and opts.get("options"):
        return True, opts["options"][0]
    if typ == DYNAMIC_COMBO and opts.get("options"):
        return True, opts["options"][0].get("key")
    return False, None


def _control_slots(typ: str | list | tuple, opts: dict[str, Any], key: str) -> int:
    """How many unsent widgets the frontend adds after this one."""
    if typ == "INT" and opts.get("control_after_generate", key in ("seed", "noise_seed")):
        return 1  # frontend useIntWidget: control_after_generate ?? name in [seed, noise_seed]
    if typ == "FLOAT" and opts.get("control_after_generate"):
        return 1
    if _is_combo(typ) and opts.get("control_after_generate"):
        return 2  # control widget and its control_filter_list widget
    return 0


def dynamic_options(opts: dict[str, Any]) -> list:
    """The option keys of a DynamicCombo input."""
    return [option.get("key") for option in opts.get("options") or []]


def _option_inputs(opts: dict[str, Any], key: object) -> dict[str, Any] | None:
    """The inputs ({"required": ..., "optional": ...}) that a DynamicCombo's option `key` reveals (None: no such
    option)."""
    for option in opts.get("options") or []:
        if option.get("key") == key:
            return option.get("inputs") or {}
    return None


def read_widgets(input_types: dict, values: Sequence[Any] = (), prefix: str = "", top_level: bool = True,
                 pos: int = 0) -> tuple[list[tuple[str | None, Any, tuple | list | str | None]], int]:
    """The widgets of a node in the order the frontend creates them, given the node's `widgets_values`.

    Returns (widgets, pos): widgets is a list of (name, value, spec) for sent widgets and (CONTROL, value, None) for
    unsent ones, where value is widgets_values[i] or, past the end of `values`, MISSING; pos is how many values
    were read. A DynamicCombo's value selects the option whose inputs follow it (named "<combo>.<input>")."""
    widgets = []
    for section in ("required", "optional"):
        has_upload = False
        for key, spec in (input_types.get(section) or {}).items():
            typ, opts = _type_and_options(spec)
            if not _is_widget(typ, opts):
                continue
            name = prefix + key
            value = values[pos] if pos < len(values) else MISSING
            widgets.append((name, value, spec))
            pos += 1
            for _ in range(_control_slots(typ, opts, key)):
                widgets.append((CONTROL, values[pos] if pos < len(values) else MISSING, None))
                pos += 1
            if typ == DYNAMIC_COMBO:
                chosen = value if value is not MISSING else _default(typ, opts)[1]
                revealed = _option_inputs(opts, chosen)
                if revealed is not None:  # an unknown key: the caller reports it
                    nested, pos = read_widgets(revealed, values, name + ".", False, pos)
                    widgets += nested
            if _is_combo(typ) and any(opts.get(option) for option in UPLOAD_OPTIONS):
                has_upload = True
            if section == "required" and opts.get("audio_upload"):
                has_upload = True
        if top_level and section == "required" and has_upload:
            # Comfy.UploadImage adds `upload` after the required inputs (serialize: false)
            widgets.append((CONTROL, values[pos] if pos < len(values) else MISSING, None))
            pos += 1
    return widgets, pos


def widget_slots(input_types: dict, values: Iterable[Any] = ()) -> list:
    """Names of a node's widgets in the order the frontend creates them; CONTROL marks unsent extra widgets.
    DynamicCombo widgets expand the option chosen in `values` (by default their default option)."""
    return [name for name, _, _ in read_widgets(input_types, list(values))[0]]


def widget_defaults(input_types: dict) -> dict:
    """Default value of each top-level widget (the frontend's value for a widget missing from widgets_values)."""
    defaults = {}
    for section in ("required", "optional"):
        for name, spec in (input_types.get(section) or {}).items():
            has, value = _default(*_type_and_options(spec))
            if has:
                defaults[name] = value
    return defaults


def input_specs(input_types: dict, inputs: dict) -> dict:
    """name -> spec of every input a node takes with these prompt `inputs`: its top-level inputs and, for each
    DynamicCombo, the inputs of the chosen option (default option when unset) under "<combo>.<input>" names."""
    specs = {}

    def walk(types: dict, prefix: str) -> None:
        for section in ("required", "optional"):
            for key, spec in (types.get(section) or {}).items():
                name = prefix + key
                specs[name] = spec
                typ, opts = _type_and_options(spec)
                if typ == DYNAMIC_COMBO:
                    chosen = inputs.get(name, _default(typ, opts)[1])
                    revealed = _option_inputs(opts, chosen)
                    if revealed is not None:
                        walk(revealed, name + ".")
    walk(input_types, "")
    return specs


def _node_widget_inputs(node: dict[str, Any], input_types: dict, notes: list[str],
                        strict: bool = True) -> dict[str, Any]:
    """The prompt inputs that a UI node's widgets_values give, by the frontend's widget order (see read_widgets)."""
    values = list(node.get("widgets_values") or [])
    label = _describe(node)
    widgets, used = read_widgets(input_types, values)
    inputs = {}
    for name, value, spec in widgets:
        if name is CONTROL:
            continue
        typ, opts = _type_and_options(spec)
        if value is MISSING:
            has, value = _default(typ, opts)
            if not has:
                notes.append(f"{label}: the workflow has no value for widget '{name}' and it has no default")
                continue
            notes.append(f"{label}: the workflow has no value for widget '{name}' (saved before this ComfyUI's "
                         f"{node['type']} had it): using its default {value!r}")
        if typ == DYNAMIC_COMBO and _option_inputs(opts, value) is None:
            raise WorkflowError(f"{label}: widget '{name}' is {value!r}, which this ComfyUI's {node['type']} does not "
                                f"offer (its options: {', '.join(map(repr, dynamic_options(opts)))}); the workflow "
                                "was saved with a ComfyUI whose node has other options")
        inputs[name] = _wrap(value)
    extra = values[used:]
    if any(value is not None for value in extra):  # serialize:false widgets leave null holes, not values
        names = [name for name, _, _ in widgets if name is not CONTROL]
        message = (f"{label}: the workflow holds {len(values)} widget values, but this ComfyUI's {node['type']} "
                   f"takes {used} ({', '.join(names) or 'no widgets'}"
                   f"{', with unsent control widgets' if len(names) < used else ''}); the values "
                   f"{', '.join(map(repr, extra))} after them have no widget here")
        if not strict:  # e.g. a widget that a frontend extension adds and saves
            notes.append(f"{message}: they are left out")
            return inputs
        raise WorkflowError(f"{message}. The workflow was saved with a ComfyUI whose {node['type']} has other "
                            "widgets: open and save it in this ComfyUI, or run it with the ComfyUI it was made for")
    return inputs


def _describe(node: dict[str, Any]) -> str:
    title = node.get("title")
    return f"node {node['id']} ({node['type']}{', ' + repr(title) if title and title != node['type'] else ''})"


def _type_match(a: str | None, b: str | None) -> bool:
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


def ui_to_api(workflow: dict, node_classes: Mapping[str, Any], display_names: Mapping[str, str] | None = None,
              notes: list[str] | None = None, strict: bool = True) -> dict:
    """Convert a UI workflow (or pass an API prompt through) into an API prompt.

    node_classes: mapping class_type -> node class with INPUT_TYPES() (ComfyUI's nodes.NODE_CLASS_MAPPINGS);
    display_names: class_type -> display name (nodes.NODE_DISPLAY_NAME_MAPPINGS), the title of an untitled node;
    notes: a list that receives a line for each widget the workflow has no value for (its default is used);
    strict: False leaves out widget values a node does not have (with a note) instead of refusing the workflow.
    Raises WorkflowError naming the node when a type is unknown, the graph is malformed, or (strict) its widget
    values do not fit this ComfyUI's node."""
    notes = [] if notes is None else notes
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

    def resolve(node: dict[str, Any], index: int, seen: tuple[int | str, ...] = ()) -> tuple[Any, ...] | None:
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
        values = node.get("widgets_values")
        if isinstance(values, dict):  # some nodes save their widgets by name
            inputs = {k: _wrap(v) for k, v in values.items()}
        else:
            inputs = _node_widget_inputs(node, input_types, notes, strict)
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


def _wrap(value: Any) -> Any:
    """The frontend sends a list-valued widget as {"__value__": list}, so it is not read as a link."""
    return {"__value__": value} if isinstance(value, list) else value


def _is_link(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _bypass_slot(node: dict[str, Any], slot: int, link_type: str | None) -> int:
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
