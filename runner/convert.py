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
- a file whose shape neither format allows (a node without id or type, a link that is not a link, `inputs` that
  are not slot objects, lists/objects nested deeper than MAX_NESTING) is refused by check_workflow, naming the node
  and the field, before anything reads it; reroute chains and the cycle check are walked without recursion, so a
  graph of any length converts.
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
MAX_NESTING = 100  # lists/objects inside each other in a workflow file; saved workflows nest fewer than 15
# nodes one after another: ComfyUI validates and caches a prompt by one nested call per linked node (0.8.0 stopped
# near 970 in process); a server's own call stack comes on top, so the runner keeps a margin below that
# (test_runner_limits.py runs chains of this length on 0.8.0 and 0.30.0, in process and as a server)
MAX_CHAIN = 800
MAX_DYNAMIC_DEPTH = 16  # DynamicCombo options inside options; ComfyUI's own nest two or three deep
MODES = {0: "always", 1: "on event", 2: "never: muted", 3: "on trigger", 4: "bypass"}  # LiteGraph's node modes


class WorkflowError(ValueError):
    """The workflow cannot be converted (unknown node type, broken link, subgraph...)."""


def is_api_prompt(data: object) -> bool:
    """True for an API-format prompt: {id: {"class_type": ..., "inputs": {...}}} (check_workflow checks each entry)."""
    return (isinstance(data, dict) and "nodes" not in data
            and any(isinstance(v, dict) and "class_type" in v for v in data.values()))


def _show(value: object) -> str:
    """A JSON value as a user reads it: its kind and a short excerpt."""
    kind = ("null" if value is None else "true/false" if isinstance(value, bool)
            else "a number" if isinstance(value, (int, float)) else "a text" if isinstance(value, str)
            else "a list" if isinstance(value, list) else "an object" if isinstance(value, dict)
            else type(value).__name__)
    if value is None or isinstance(value, bool):
        return kind
    text = repr(value)
    return f"{kind} ({text[:60]}{'...' if len(text) > 60 else ''})"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_node_id(value: object) -> bool:
    """LiteGraph's NodeId: a whole number or a text (floats, true/false, null, lists are not ids)."""
    return _is_int(value) or (isinstance(value, str) and value != "")


def too_deep(data: object, limit: int = MAX_NESTING) -> str | None:
    """Where `data` nests more than `limit` lists/objects inside each other (a JSON path), else None. Iterative, so
    any depth is measured without recursion."""
    stack = [(data, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        if depth > limit:
            return path or "the top level"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, (dict, list)):
                step = f"[{key}]" if isinstance(value, list) else (f".{key}" if path else str(key))
                stack.append((item, depth + 1, path + step if len(path) < 40 else path.rstrip(".") + "..."))
    return None


def check_workflow(data: object) -> None:
    """Raise WorkflowError, naming the node and the field, when `data` is neither a UI workflow nor an API prompt
    that the converter and ComfyUI can read: the shape only (node types and widget values are checked against the
    node definitions when converting)."""
    where = too_deep(data)
    if where is not None:
        raise WorkflowError(f"lists/objects are nested more than {MAX_NESTING} deep (at {where}): a saved workflow "
                            "nests fewer than 15; the file is not a workflow ComfyUI saved")
    if not isinstance(data, dict):
        raise WorkflowError(f"not a ComfyUI workflow: the file holds {_show(data)}, expected an object (a UI workflow "
                            "with a 'nodes' list, or an API prompt {id: {'class_type': ..., 'inputs': ...}})")
    if "nodes" in data:
        _check_ui(data)
    elif is_api_prompt(data):
        _check_api(data)
    else:
        raise WorkflowError("not a ComfyUI workflow: expected a UI workflow with a 'nodes' list, "
                            "or an API prompt {id: {'class_type': ..., 'inputs': ...}}")


def _check_ui(workflow: dict) -> None:
    nodes = workflow["nodes"]
    if not isinstance(nodes, list):
        raise WorkflowError(f"'nodes' is {_show(nodes)}, expected a list of nodes")
    seen = {}
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise WorkflowError(f"nodes[{i}] is {_show(node)}, not a node (an object with id, type, inputs, "
                                "widgets_values)")
        if "id" not in node or not _is_node_id(node["id"]):
            typ = f" ({node['type']})" if isinstance(node.get("type"), str) else ""
            raise WorkflowError(f"nodes[{i}]{typ}: " + ("it has no 'id'" if "id" not in node else
                                f"its id is {_show(node['id'])}") + "; a node id is a whole number or a text")
        node_id = node["id"]
        if str(node_id) in seen:
            raise WorkflowError(f"nodes[{seen[str(node_id)]}] and nodes[{i}] have the same id {node_id!r}: "
                                "each node needs its own id")
        seen[str(node_id)] = i
        if not isinstance(node.get("type"), str) or not node["type"]:
            raise WorkflowError(f"node {node_id}: " + ("it has no 'type'" if "type" not in node else
                                f"'type' is {_show(node['type'])}")
                                + ", expected the node's type name, e.g. 'KSampler'")
        label = f"node {node_id} ({node['type']})"
        if node.get("title") is not None and not isinstance(node["title"], str):
            raise WorkflowError(f"{label}: 'title' is {_show(node['title'])}, expected a text")
        if "mode" in node and not (_is_int(node["mode"]) and node["mode"] in MODES):
            raise WorkflowError(f"{label}: 'mode' is {_show(node['mode'])}, expected one of "
                                + ", ".join(f"{k} ({v})" for k, v in MODES.items()))
        values = node.get("widgets_values")
        if values is not None and not isinstance(values, (list, dict)):
            raise WorkflowError(f"{label}: 'widgets_values' is {_show(values)}, expected a list of widget values")
        for field in ("inputs", "outputs"):
            slots = node.get(field)
            if slots is None:
                continue
            if not isinstance(slots, list):
                raise WorkflowError(f"{label}: '{field}' is {_show(slots)}, expected a list of slots")
            for j, slot in enumerate(slots):
                if not isinstance(slot, dict):
                    raise WorkflowError(f"{label}: {field}[{j}] is {_show(slot)}, expected a slot object "
                                        "{'name': ..., 'type': ..., " + ("'link': ...}" if field == "inputs" else
                                                                         "'links': [...]}"))
                if field == "inputs" and not isinstance(slot.get("name"), str):
                    raise WorkflowError(f"{label}: inputs[{j}]'s 'name' is {_show(slot.get('name'))}, expected "
                                        "the input's name")
                if field == "inputs" and slot.get("link") is not None and not _is_int(slot["link"]):
                    raise WorkflowError(f"{label}: input '{slot['name']}': its link is {_show(slot['link'])}, "
                                        "expected a link id (a whole number) or null")
    links = workflow.get("links")
    if links is not None and not isinstance(links, list):
        raise WorkflowError(f"'links' is {_show(links)}, expected a list of links")
    for i, link in enumerate(links or []):
        _link_fields(link, i)


LINK_FIELDS = ("id", "origin_id", "origin_slot", "target_id", "target_slot")


def _link_fields(link: object, index: int) -> tuple:
    """(id, origin id, origin slot, target id, target slot, type) of one entry of 'links': a list [id, origin id,
    origin slot, target id, target slot, type] (workflow version 0.4) or an object with those names (version 1)."""
    if isinstance(link, list) and len(link) >= len(LINK_FIELDS):
        fields = (*link[:5], link[5] if len(link) > 5 else None)
    elif isinstance(link, dict) and all(name in link for name in LINK_FIELDS):
        fields = (*(link[name] for name in LINK_FIELDS), link.get("type"))
    else:
        raise WorkflowError(f"links[{index}] is {_show(link)}, expected a link [id, origin node id, origin slot, "
                            "target node id, target slot, type]")
    for name, value in zip(LINK_FIELDS, fields, strict=False):
        valid = _is_node_id(value) if name.endswith("_id") else _is_int(value) and (name == "id" or value >= 0)
        if not valid:
            raise WorkflowError(f"links[{index}] (link {fields[0]!r}): its {name.replace('_', ' ')} is {_show(value)}, "
                                "expected " + ("a node id" if name.endswith("_id") else "a link id (a whole number)"
                                               if name == "id" else "a slot number (0, 1, ...)"))
    return fields


def _check_api(prompt: dict) -> None:
    for key, entry in prompt.items():
        if not isinstance(entry, dict):
            raise WorkflowError(f"node {key}: {_show(entry)}, expected a node {{'class_type': ..., 'inputs': ...}}")
        if not isinstance(entry.get("class_type"), str) or not entry["class_type"]:
            raise WorkflowError(f"node {key}: " + ("it has no 'class_type'" if "class_type" not in entry else
                                f"'class_type' is {_show(entry['class_type'])}")
                                + ", expected the node's type name, e.g. 'KSampler'")
        label = f"node {key} ({entry['class_type']})"
        inputs = entry.get("inputs", {})
        if not isinstance(inputs, dict):
            raise WorkflowError(f"{label}: 'inputs' is {_show(inputs)}, expected an object "
                                "{input name: value, or [node id, output slot] for a link}")
        if "_meta" in entry and not isinstance(entry["_meta"], dict):
            raise WorkflowError(f"{label}: '_meta' is {_show(entry['_meta'])}, expected an object such as "
                                "{'title': ...}")
        if not isinstance(entry.get("_meta", {}).get("title", ""), str):
            raise WorkflowError(f"{label}: its title is {_show(entry['_meta']['title'])}, expected a text")
        for name, value in inputs.items():
            if not isinstance(value, list):  # ComfyUI reads any list as a link; a list value is {"__value__": [...]}
                continue
            if not _is_link(value) or value[1] < 0:
                raise WorkflowError(f"{label}: input '{name}' is {_show(value)}; a list is a link, [node id (a "
                                    "text), output slot (0, 1, ...)], and a list value is written {'__value__': [...]}")
            if value[0] not in prompt:
                raise WorkflowError(f"{label}: input '{name}' links to node {value[0]!r}, which is not in the "
                                    "workflow")


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


def _sources(prompt: dict, node: str) -> list[str]:
    """The nodes that `node`'s inputs are linked to, in input order."""
    return [v[0] for v in (prompt[node].get("inputs") or {}).values() if _is_link(v) and v[0] in prompt]


def find_cycle(prompt: dict) -> list[str] | None:
    """The node ids of a cycle of links in an API prompt, in link order (None when it has none): ComfyUI's
    validation only says "Prompt outputs failed validation" for one. A depth-first walk with its own stack, so a
    chain of any length is checked."""
    state = {}  # node id -> 1 while on the current path, 2 when done
    for root in prompt:
        if root in state:
            continue
        state[root] = 1
        path, pending = [root], [iter(_sources(prompt, root))]  # the path and, per node on it, its unvisited sources
        while pending:
            for source in pending[-1]:
                if state.get(source) == 1:
                    return path[path.index(source):][::-1]  # from a node to the node it feeds
                if source not in state:
                    state[source] = 1
                    path.append(source)
                    pending.append(iter(_sources(prompt, source)))
                    break
            else:
                state[path.pop()] = 2
                pending.pop()
    return None


def longest_chain(prompt: dict) -> list[str]:
    """The node ids of the longest chain of links in an API prompt without cycles, from its first node to its last
    (ComfyUI validates and caches a prompt by recursion along its links: a chain near 1000 nodes stops it).
    Computed with its own stack, so a chain of any length is measured."""
    length, before = {}, {}  # node -> nodes in the longest chain ending there, and the node before it there
    for root in prompt:
        stack = [root]
        while stack:
            node = stack[-1]
            if node in length:
                stack.pop()
                continue
            waiting = [s for s in _sources(prompt, node) if s not in length]
            if waiting:
                stack += waiting
                continue
            stack.pop()
            sources = _sources(prompt, node)
            best = max(sources, key=lambda k: length[k], default=None)
            length[node], before[node] = (1 + length[best], best) if best is not None else (1, None)
    node = max(length, key=lambda k: length[k], default=None)
    chain = []
    while node is not None:
        chain.append(node)
        node = before[node]
    return chain[::-1]


def check_output_slots(prompt: dict, node_classes: Mapping[str, Any]) -> None:
    """Raise WorkflowError for a link to an output slot that its node does not have (ComfyUI's validation would stop
    on an IndexError); nodes whose definition gives no RETURN_TYPES are not checked."""
    for key, entry in prompt.items():
        for name, value in (entry.get("inputs") or {}).items():
            if not _is_link(value) or value[0] not in prompt:
                continue
            source = prompt[value[0]]
            outputs = getattr(node_classes.get(source["class_type"]), "RETURN_TYPES", None)
            if isinstance(outputs, (list, tuple)) and value[1] >= len(outputs):
                raise WorkflowError(f"node {key} ({entry['class_type']}) input '{name}' takes output {value[1]} "
                                    f"of node {value[0]} ({source['class_type']}), which has {len(outputs)} output"
                                    f"{'s' if len(outputs) != 1 else ''} ({', '.join(map(str, outputs))}; "
                                    "slots count from 0)")


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
                 pos: int = 0, depth: int = 0) -> tuple[list[tuple[str | None, Any, tuple | list | str | None]], int]:
    """The widgets of a node in the order the frontend creates them, given the node's `widgets_values`.

    Returns (widgets, pos): widgets is a list of (name, value, spec) for sent widgets and (CONTROL, value, None) for
    unsent ones, where value is widgets_values[i] or, past the end of `values`, MISSING; pos is how many values
    were read. A DynamicCombo's value selects the option whose inputs follow it (named "<combo>.<input>"); options
    nested deeper than MAX_DYNAMIC_DEPTH are refused (a node definition, not a workflow, would be at fault)."""
    if depth > MAX_DYNAMIC_DEPTH:
        raise WorkflowError(f"widget '{prefix.rstrip('.')}': the node definition nests DynamicCombo options more "
                            f"than {MAX_DYNAMIC_DEPTH} deep")
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
                    nested, pos = read_widgets(revealed, values, name + ".", False, pos, depth + 1)
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

    def walk(types: dict, prefix: str, depth: int = 0) -> None:
        if depth > MAX_DYNAMIC_DEPTH:  # a node definition nested past any real one: its names stop there
            return
        for section in ("required", "optional"):
            for key, spec in (types.get(section) or {}).items():
                name = prefix + key
                specs[name] = spec
                typ, opts = _type_and_options(spec)
                if typ == DYNAMIC_COMBO:
                    chosen = inputs.get(name, _default(typ, opts)[1])
                    revealed = _option_inputs(opts, chosen)
                    if revealed is not None:
                        walk(revealed, name + ".", depth + 1)
    walk(input_types, "")
    return specs


def _node_widget_inputs(node: dict[str, Any], input_types: dict, notes: list[str],
                        strict: bool = True) -> dict[str, Any]:
    """The prompt inputs that a UI node's widgets_values give, by the frontend's widget order (see read_widgets)."""
    values = list(node.get("widgets_values") or [])
    label = _describe(node)
    try:
        widgets, used = read_widgets(input_types, values)
    except WorkflowError as error:
        raise WorkflowError(f"{label}: {error}") from None
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
    """link id -> (origin id, origin slot, target id, target slot, type), node ids as texts; accepts list (v0.4) and
    object (v1) links. A later entry with the same id replaces an earlier one, as in the frontend's link map."""
    out = {}
    for i, link in enumerate(workflow.get("links") or []):
        link_id, origin_id, origin_slot, target_id, target_slot, link_type = _link_fields(link, i)
        out[link_id] = (str(origin_id), origin_slot, str(target_id), target_slot, link_type)
    return out


def _subgraph_ids(workflow: dict) -> set:
    """The ids of the subgraphs a workflow defines (a subgraph node's type is its subgraph's id)."""
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    return {s.get("id") for s in subgraphs if isinstance(s, dict) and isinstance(s.get("id"), str)} \
        if isinstance(subgraphs, list) else set()


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
    check_workflow(workflow)
    if is_api_prompt(workflow):
        return {str(k): {**v, "inputs": dict(v.get("inputs", {}))} for k, v in workflow.items()}
    subgraphs = _subgraph_ids(workflow)
    nodes = {str(node["id"]): node for node in workflow["nodes"]}
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

    def resolve(node: dict[str, Any], index: int) -> tuple[Any, ...] | None:
        """What node.inputs[index] receives: ("link", id, slot), ("value", v) or None (unconnected). Reroutes and
        bypassed nodes are followed in a loop, so a chain of any length resolves."""
        seen = set()
        while True:
            link_id = node["inputs"][index].get("link")
            if link_id is None:
                return None
            if link_id not in links:
                raise WorkflowError(f"node {node['id']} ({node['type']}) input "
                                    f"'{node['inputs'][index]['name']}' refers to link {link_id}, which does not exist")
            origin_id, origin_slot, _, _, link_type = links[link_id]
            parent = nodes.get(origin_id)
            if parent is None:
                raise WorkflowError(f"link {link_id} (into node {node['id']} ({node['type']}) input "
                                    f"'{node['inputs'][index]['name']}') comes from node {origin_id}, which does "
                                    "not exist")
            if origin_id in seen:
                raise WorkflowError(f"link {link_id}: the reroutes/bypassed nodes form a loop at node {origin_id}")
            seen.add(origin_id)
            if parent["type"] == "PrimitiveNode":
                values = parent.get("widgets_values")
                if not isinstance(values, list) or not values:  # an unlinked one may have none: only used ones
                    raise WorkflowError(f"node {origin_id} (PrimitiveNode) feeds node {node['id']} ({node['type']}) "
                                        f"input '{node['inputs'][index]['name']}' but holds no value: its "
                                        f"widgets_values is {_show(values)}, expected [value, ...]")
                return ("value", values[0])
            if parent["type"] == "Reroute":
                if not parent.get("inputs"):
                    return None
                node, index = parent, 0
            elif parent["type"] in VIRTUAL_TYPES:
                return None
            elif parent.get("mode", 0) == BYPASSED:
                slot = _bypass_slot(parent, origin_slot, link_type)
                if not 0 <= slot < len(parent.get("inputs") or []):
                    return None
                node, index = parent, slot
            else:
                return ("link", parent["id"], origin_slot)

    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in VIRTUAL_TYPES or node.get("mode", 0) in (MUTED, BYPASSED):
            continue
        values = node.get("widgets_values")
        if isinstance(values, dict):  # some nodes save their widgets by name
            inputs = {k: _wrap(v) for k, v in values.items()}
        else:
            try:
                inputs = _node_widget_inputs(node, node_classes[node["type"]].INPUT_TYPES(), notes, strict)
            except (AttributeError, TypeError, KeyError, IndexError) as error:  # a definition of another shape
                raise WorkflowError(f"{_describe(node)}: this ComfyUI's definition of {node['type']} (its "
                                    f"INPUT_TYPES) is not one the frontend could build widgets from: "
                                    f"{type(error).__name__}: {error}") from None
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
    out_type = outputs[slot].get("type") if slot < len(outputs) else link_type
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
