"""What the command line, the in-process runner, the batch and the server client share: the user-facing error
and the log, reading the workflow and preparing its prompt (conversion, cycle check, --set overrides), ComfyUI's
validation errors as lines, the walk over an execution's outputs, and the path rules (safe names, paths kept inside
a folder, folders owned by a run and cleaned when that run is gone). No ComfyUI import."""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import sys
import uuid
from typing import TYPE_CHECKING, Any

from .convert import WorkflowError, find_cycle, input_specs, is_api_prompt, takes_value, ui_to_api

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class RunnerError(Exception):
    """A user-facing failure: printed without a traceback, exit status `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"[vcut-run] {message}", file=sys.stderr, flush=True)


def load_workflow(path: str) -> dict:
    try:
        return json.loads(pathlib.Path(path).read_text())
    except FileNotFoundError:
        raise RunnerError(f"workflow file not found: {path}") from None
    except IsADirectoryError:
        raise RunnerError(f"the workflow {path} is a folder: give a workflow .json file") from None
    except UnicodeDecodeError as error:
        raise RunnerError(f"{path} is not a text (JSON) file: {error}") from None
    except OSError as error:
        raise RunnerError(f"cannot read the workflow {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise RunnerError(f"{path} is not valid JSON: {error}") from None


def output_folder(path: str) -> pathlib.Path:
    """--output-dir, created; a named error when it is a file or cannot be created."""
    folder = pathlib.Path(path).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise RunnerError(f"--output-dir {path} is a file, not a folder: give the folder the outputs go into")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunnerError(f"--output-dir {path}: cannot create the folder: {error.strerror or error}") from None
    return folder


def parse_override(text: str) -> tuple[str, str, Any, str]:
    """'NODE.INPUT=VALUE' -> (NODE, INPUT, value, raw text); the value is parsed as JSON when it is JSON, else it is
    the text itself."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise RunnerError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. --set KSampler.steps=10 or --set 6.seed=3")
    key, raw = text.split("=", 1)
    node, name = key.rsplit(".", 1)
    if not node or not name:
        raise RunnerError(f"--set {text!r}: expected NODE.INPUT=VALUE")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return node, name, value, raw


def coerce(spec: tuple | list | str, value: Any, raw: str) -> Any:
    """A STRING input, or a COMBO whose choices are text, takes the text as typed (so '8' stays the string '8')."""
    typ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    choices = typ if isinstance(typ, (list, tuple)) else opts.get("options") if typ == "COMBO" else None
    if (typ == "STRING" and not isinstance(value, str)) or (choices is not None and value not in choices
                                                             and raw in choices):
        return raw
    return value


def matching_nodes(prompt: dict, node: str) -> list[str]:
    """The node with this id, else every node titled so and every node of that type (whatever its title)."""
    if node in prompt:
        return [node]
    return [k for k, v in prompt.items() if v.get("_meta", {}).get("title") == node or v["class_type"] == node]


def apply_overrides(prompt: dict, overrides: list[str], node_classes: Mapping[str, Any]) -> list[str]:
    """Set inputs by node id, title or class type (every matching node); returns what was set, for the log.
    An input of a DynamicCombo's option is named with its dots, e.g. --set SaveVideo.format.codec=h264."""
    done = []
    for text in overrides:
        node, name, parsed, raw = parse_override(text)
        targets = matching_nodes(prompt, node)
        key = f"{node}.{name}"
        for cut in [i for i, c in enumerate(key) if c == "."][-2::-1]:  # NODE.a.b: node "NODE", input "a.b"
            if targets:
                break
            node, name = key[:cut], key[cut + 1:]
            targets = matching_nodes(prompt, node)
        if not targets:
            node = parse_override(text)[0]
            known = ", ".join(f"{k} ({v['class_type']}" + (f" '{v['_meta']['title']}'" if v.get("_meta") else "")
                              + ")" for k, v in sorted(prompt.items(), key=lambda kv: _id_key(kv[0])))
            raise RunnerError(f"--set {text!r}: no node with id, title or type {node!r}; the workflow has: {known}")
        for target in targets:
            cls = node_classes.get(prompt[target]["class_type"])
            spec = input_specs(cls.INPUT_TYPES() if cls is not None else {}, prompt[target]["inputs"])
            if name not in spec:
                raise RunnerError(f"--set {text!r}: node {target} ({prompt[target]['class_type']}) has no input "
                                  f"{name!r}; its inputs are: {', '.join(spec)}")
            if not takes_value(spec[name]):
                kind = spec[name][0] if isinstance(spec[name], (list, tuple)) and spec[name] else spec[name]
                raise RunnerError(f"--set {text!r}: input {name!r} of node {target} ({prompt[target]['class_type']}) "
                                  f"takes a {kind} from another node's output (a link), not a value; --set sets "
                                  "widget values, such as: " + ", ".join(k for k, v in spec.items() if takes_value(v)))
            value = coerce(spec[name], parsed, raw)
            prompt[target]["inputs"][name] = {"__value__": value} if isinstance(value, list) else value
            done.append(f"node {target} ({prompt[target]['class_type']}).{name} = {value!r}")
    return done


def _id_key(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def format_validation(error: dict, node_errors: dict, prompt: dict) -> str:
    """ComfyUI's validate_prompt result as readable lines."""
    lines = [f"workflow failed validation: {error.get('message', '')}"
             + (f" ({error['details']})" if error.get("details") else "")]
    for node_id, info in sorted(node_errors.items(), key=lambda kv: _id_key(str(kv[0]))):
        title = prompt.get(node_id, {}).get("_meta", {}).get("title", "")
        lines.append(f"  node {node_id} ({info.get('class_type', '?')}{', ' + repr(title) if title else ''}):")
        for item in info.get("errors", []):
            details = f": {item['details']}" if item.get("details") else ""
            lines.append(f"    - {item.get('message', '')}{details}")
    return "\n".join(lines)


def prepare_prompt(options: argparse.Namespace, workflow: dict, node_classes: Mapping[str, Any],
                   display_names: Mapping[str, str] | None = None) -> dict:
    """The workflow as an API prompt with the --set overrides applied."""
    notes = []
    try:
        prompt = ui_to_api(workflow, node_classes, display_names, notes, strict=not options.lenient)
    except WorkflowError as error:
        raise RunnerError(f"cannot convert {options.workflow}: {error}") from None
    for note in notes:
        log(f"note: {note}")
    if is_api_prompt(workflow):
        unknown = sorted({v["class_type"] for v in prompt.values()} - set(node_classes))
        if unknown:
            raise RunnerError(f"unknown node type(s): {', '.join(unknown)}; install the custom node pack "
                              "that provides them")
    cycle = find_cycle(prompt)
    if cycle:
        path = " -> ".join(f"node {k} ({prompt[k]['class_type']})" for k in cycle + cycle[:1])
        raise RunnerError(f"cannot run {options.workflow}: its links form a cycle, {path}; ComfyUI runs a node only "
                          "after the nodes it takes inputs from: remove one of these links")
    for line in apply_overrides(prompt, options.set or [], node_classes):
        log(f"set {line}")
    return prompt


def output_entries(history: dict) -> list[tuple[str, dict]]:
    """(node id, {filename, subfolder, type: output}) of every file the output nodes of one execution report as
    written to the output folder: a PromptExecutor's history_result or a server's /history entry alike."""
    found = []

    def walk(node_id: str, value: Any) -> None:
        if isinstance(value, dict):
            if "filename" in value and value.get("type", "output") == "output":
                found.append((node_id, value))
                return
            for item in value.values():
                walk(node_id, item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(node_id, item)

    for node_id, ui in (history.get("outputs") or {}).items():
        walk(node_id, ui)
    return found


def written_files(history: dict, output_dir: str) -> list[tuple[str, pathlib.Path]]:
    """(node id, path) of every file an execution wrote into `output_dir`."""
    return [(node_id, pathlib.Path(output_dir) / entry.get("subfolder", "") / entry["filename"])
            for node_id, entry in output_entries(history)]


def describe_node(prompt: dict, node_id: str | None, kind: str | None = None) -> str:
    """'node 7 (KSampler)' or 'node 7 (KSampler, 'my title')', for progress lines and errors."""
    entry = prompt.get(str(node_id), {})
    title = entry.get("_meta", {}).get("title")
    kind = entry.get("class_type") or kind or "?"
    return f"node {node_id} ({kind}{'' if not title or title == kind else ', ' + repr(title)})"


def execution_errors(errors: list[dict], prompt: dict, tracebacks: bool = False) -> str:
    """ComfyUI's execution_error / execution_interrupted messages as one line per failing node (with the Python
    traceback after each, when asked and given)."""
    lines = []
    for data in errors:
        lines.append(f"{describe_node(prompt, data.get('node_id'), data.get('node_type'))}: "
                     f"{data.get('exception_type', 'interrupted')}: {str(data.get('exception_message', '')).strip()}")
        if tracebacks and data.get("traceback"):
            lines.append("".join(data["traceback"]))
    return "\n".join(lines)


def safe_name(name: str) -> str:
    """A file or folder name with its control characters (newline, tab, escape ...) replaced by "_": such a name
    neither splits the printed list of written files (one path a line) nor breaks an HTTP header."""
    return CONTROL_CHARACTERS.sub("_", name)


def inside(folder: pathlib.Path, subfolder: object, filename: object) -> pathlib.Path:
    """folder/subfolder/filename for a file that a server (or ComfyUI's history) names, its names made safe;
    ValueError naming the path unless it stays inside `folder`: an absolute subfolder, a `..` part, a file name
    that is absolute or holds a separator, and a path that a link inside `folder` leads out of are refused."""
    if not isinstance(subfolder, str) or not isinstance(filename, str):
        raise ValueError(f"the output {subfolder!r}/{filename!r} is not a pair of names")
    shown = f"subfolder {subfolder!r}, file {filename!r}"
    if subfolder.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", subfolder):
        raise ValueError(f"refused the output ({shown}): an absolute subfolder")
    parts = [part for part in re.split(r"[/\\]", subfolder) if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"refused the output ({shown}): '..' leads out of the item's output folder")
    if filename in ("", ".", "..") or re.search(r"[/\\]", filename) or re.match(r"[A-Za-z]:", filename):
        raise ValueError(f"refused the output ({shown}): the file name is not a plain name")
    target = folder.joinpath(*map(safe_name, parts), safe_name(filename))
    if not target.resolve().is_relative_to(folder.resolve()):
        raise ValueError(f"refused the output ({shown}): it resolves to {target.resolve()}, outside {folder}")
    return target


def free_path(path: pathlib.Path) -> pathlib.Path:
    """`path`, or `stem-2.ext`, `stem-3.ext` ... where a file of that name exists: nothing is overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def owned_name(prefix: str) -> str:
    """A name for a folder of this run: prefix, this process's id, a random part (clean_stale reads the id)."""
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:8]}"


def clean_stale(folder: pathlib.Path, prefix: str) -> None:
    """Remove the folders and links named `prefix<pid>-...` in `folder` whose owner process is gone (left by a
    killed run); those of running processes, and names without an owner, are left alone."""
    if not folder.is_dir():
        return
    for path in folder.glob(prefix + "*"):
        found = re.fullmatch(re.escape(prefix) + r"(\d+)-.+", path.name)
        if not found or process_alive(int(found.group(1))):
            continue
        if path.is_symlink() or not path.is_dir():
            path.unlink(missing_ok=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
        log(f"removed {path}, left by run {found.group(1)}, which is gone")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
