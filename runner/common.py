"""What the command line, the in-process runner, the batch and the server client share: the user-facing error
and the log, reading the workflow and preparing its prompt (conversion, cycle check, --set overrides), ComfyUI's
validation errors as lines, the walk over an execution's outputs, and the path rules (safe names, paths kept inside
a folder, folders owned by a run and cleaned when that run is gone). No ComfyUI import."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import shutil
import socket
import sys
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .convert import (
    MAX_CHAIN,
    MAX_NESTING,
    WorkflowError,
    check_output_slots,
    check_workflow,
    find_cycle,
    input_specs,
    is_api_prompt,
    longest_chain,
    takes_value,
    ui_to_api,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Mapping

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


class RunnerError(Exception):
    """A user-facing failure: printed without a traceback, exit status `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"[vcut-run] {message}", file=sys.stderr, flush=True)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value (a browser never saves it)")


def load_workflow(path: str) -> dict:
    """The workflow file as read (UTF-8 JSON, a leading byte-order mark allowed), its shape checked as a UI workflow
    or an API prompt (convert.check_workflow) before ComfyUI starts or a server is asked; a RunnerError (exit 2)
    says what is wrong and where."""
    try:
        data = json.loads(pathlib.Path(path).read_bytes().decode("utf-8-sig"), parse_constant=_not_json)
    except FileNotFoundError:
        raise RunnerError(f"workflow file not found: {path}") from None
    except IsADirectoryError:
        raise RunnerError(f"the workflow {path} is a folder: give a workflow .json file") from None
    except UnicodeDecodeError as error:
        raise RunnerError(f"{path} is not a text (JSON) file: {error}") from None
    except OSError as error:
        raise RunnerError(f"cannot read the workflow {path}: {error.strerror or error}") from None
    except RecursionError:  # Python's JSON reader recurses once per level
        raise RunnerError(f"{path} is not a workflow: its lists/objects are nested thousands deep (a saved workflow "
                          f"nests fewer than 15, the runner reads up to {MAX_NESTING})") from None
    except ValueError as error:
        raise RunnerError(f"{path} is not valid JSON: {error}") from None
    try:
        check_workflow(data)
    except WorkflowError as error:
        raise RunnerError(f"cannot run {path}: {error}") from None
    return data


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


def format_validation(error: object, node_errors: object, prompt: dict) -> str:
    """ComfyUI's validate_prompt result (or a server's /prompt refusal) as readable lines; parts of another shape than
    ComfyUI's are shown as they are."""
    error = error if isinstance(error, dict) else {"message": "" if error is None else str(error)}
    lines = [f"workflow failed validation: {error.get('message', '')}"
             + (f" ({error['details']})" if error.get("details") else "")]
    node_errors = node_errors if isinstance(node_errors, dict) else {}
    for node_id, info in sorted(node_errors.items(), key=lambda kv: _id_key(str(kv[0]))):
        info = info if isinstance(info, dict) else {"errors": [info]}
        title = (prompt.get(str(node_id), {}).get("_meta") or {}).get("title", "")
        lines.append(f"  node {node_id} ({info.get('class_type', '?')}{', ' + repr(title) if title else ''}):")
        errors = info.get("errors")
        for item in errors if isinstance(errors, list) else [errors]:
            item = item if isinstance(item, dict) else {"message": str(item)}
            details = f": {item['details']}" if item.get("details") else ""
            lines.append(f"    - {item.get('message', '')}{details}")
    return "\n".join(lines)


def prepare_prompt(options: argparse.Namespace, workflow: dict, node_classes: Mapping[str, Any],
                   display_names: Mapping[str, str] | None = None) -> dict:
    """The workflow as an API prompt with the --set overrides applied; a RunnerError (exit 2) for a workflow that
    does not convert, names unknown node types, has a cycle of links, a chain of links longer than ComfyUI can
    follow (MAX_CHAIN nodes) or a link to an output its node does not have."""
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
        named = [f"node {k} ({prompt[k]['class_type']})" for k in cycle + cycle[:1]]
        if len(named) > 8:  # a long cycle: its first and last nodes
            named[4:-3] = [f"... {len(named) - 7} more nodes ..."]
        raise RunnerError(f"cannot run {options.workflow}: its links form a cycle, {' -> '.join(named)}; ComfyUI "
                          "runs a node only after the nodes it takes inputs from: remove one of these links")
    chain = longest_chain(prompt)
    if len(chain) > MAX_CHAIN:
        ends = [f"node {k} ({prompt[k]['class_type']})" for k in (chain[0], chain[-1])]
        raise RunnerError(f"cannot run {options.workflow}: it chains {len(chain)} nodes one after another "
                          f"({ends[0]} -> ... -> {ends[1]}); ComfyUI checks and caches a prompt by following its "
                          f"links one nested Python call per node, which stops near 1000: keep chains to "
                          f"{MAX_CHAIN} nodes (split the workflow, or do the repeated step in fewer nodes)")
    try:
        check_output_slots(prompt, node_classes)
    except WorkflowError as error:
        raise RunnerError(f"cannot run {options.workflow}: {error}") from None
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
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def move_new(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """Move `source` to `target`, or to the next free name (free_path), never over a file: the new name is made by
    link(2) or O_CREAT|O_EXCL, which fail where a name exists, so another program writing the same folder at the same
    moment cannot be overwritten. Returns where the file went."""
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        candidate = free_path(target)
        try:
            os.link(source, candidate)
        except FileExistsError:
            continue  # taken between the check and the link: the next name
        except OSError:  # another file system, or one without hard links: a new file, then copy
            try:
                fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
                shutil.copyfileobj(data, out)
        source.unlink()
        return candidate


# A run owns what it leaves on disk (staging folders, temporary folders, item claims) by a lease that any host sharing
# the folder can read: a small JSON record (run id, host, boot id, PID namespace, pid) in a file whose modification
# time a heartbeat thread renews every HEARTBEAT_S. Another run takes it as stale only when it has not been renewed
# for LEASE_S, or when it names a process of the same host, boot and PID namespace that is gone (a killed run on this
# machine: no need to wait). A pid alone is never enough: a runner in another container or on another machine sharing
# a network folder has pids this one cannot see.
LEASE_S = 120.0
HEARTBEAT_S = 10.0
LEASE_FILE = ".vcut-lease"  # the lease inside an owned folder


def namespace() -> str:
    """Where this process's pids mean something: host name, boot id and PID namespace."""
    try:
        boot = pathlib.Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    try:
        pids = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pids = "?"
    return f"{socket.gethostname()}/{boot}/{pids}"


def read_lease(path: pathlib.Path) -> dict:
    """The owner record of a lease file ({} when unreadable or cut short)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def lease_stale(path: pathlib.Path, lease_s: float = LEASE_S) -> bool:
    """A lease file (or, without one, a folder or link) is stale when not renewed for lease_s, or when its owner is a
    process of this host, boot and PID namespace that is gone. A missing file is stale."""
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return True
    if age > lease_s:
        return True
    owner = read_lease(path) if path.is_file() and not path.is_symlink() else {}
    here = owner.get("where") == namespace() and isinstance(owner.get("pid"), int)
    return here and not process_alive(owner["pid"])


def discard(path: pathlib.Path) -> bool:
    """Remove a stale folder, file or link: renamed first (one of several runs cleaning at once wins the rename), then
    removed. False when another run got there first."""
    trash = path.with_name(f"{path.name}.removing-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return False
    if trash.is_dir() and not trash.is_symlink():
        shutil.rmtree(trash, ignore_errors=True)
    else:
        trash.unlink(missing_ok=True)
    return True


def clean_stale(folder: pathlib.Path, prefix: str, lease_s: float = LEASE_S) -> None:
    """Remove the folders (and links) named `prefix...` in `folder` whose lease is stale (lease_stale on the
    folder's lease file, or on the folder itself where it has none): left by a killed run. Folders of live runs,
    on any host, are left alone."""
    if not folder.is_dir():
        return
    for path in folder.glob(prefix + "*"):
        if ".removing-" in path.name:
            if lease_stale(path, lease_s):  # a cleaner killed mid-removal
                discard(path)
            continue
        lease = path / LEASE_FILE if path.is_dir() and not path.is_symlink() else path
        if not lease.exists() and not lease.is_symlink():
            lease = path
        if lease_stale(lease, lease_s):
            owner = read_lease(lease)
            if discard(path):
                who = f"run {owner['run']} on {owner.get('host', '?')}" if owner.get("run") else "an earlier run"
                log(f"removed {path}, left by {who}, which is gone")


def process_alive(pid: int) -> bool:
    """Whether a process of this PID namespace has this id (only meaningful for a lease of this namespace)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class LeaseLost(Exception):
    """This run no longer holds a claim (its lease expired and another run took it over)."""


class Lease:
    """The leases of one run: its owned folders and claim files, renewed by one heartbeat thread.

        with Lease() as lease:
            staging = lease.folder(output_dir, ".vcut-batch-")   # made, with its lease file inside
            if lease.claim(claims / "a.claim"):                  # O_CREAT|O_EXCL: one run wins
                ...; lease.check(claims / "a.claim"); lease.release(claims / "a.claim")

    The heartbeat renews every lease file each heartbeat_s; a lease file that another run replaced or removed is
    lost. check() raises LeaseLost unless the claim is still this run's and was renewed within lease_s, so a run
    stalled past its lease never records work that another run may have taken over."""

    def __init__(self, lease_s: float = LEASE_S, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.run = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.record = {"run": self.run, "host": socket.gethostname(), "where": namespace(), "pid": os.getpid()}
        self.files: dict[pathlib.Path, float] = {}  # lease file -> monotonic time of its last renewal
        self.lost: set[pathlib.Path] = set()
        self.guard = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> Lease:
        self.thread = threading.Thread(target=self._beat, name="vcut-lease-heartbeat", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the heartbeat (waiting at most one heartbeat for it) and release the claims still held."""
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(timeout=self.heartbeat_s + 5.0)
        with self.guard:
            held = [p for p in self.files if p not in self.lost and p.name != LEASE_FILE]
        for path in held:
            self.release(path)

    def _beat(self) -> None:
        while not self.stopped.wait(self.heartbeat_s):
            self.renew()

    def renew(self) -> None:
        """Renew every lease file of this run (touch it, after checking it is still ours)."""
        with self.guard:
            files = [p for p in self.files if p not in self.lost]
        for path in files:
            try:
                if read_lease(path).get("run") != self.run:
                    raise FileNotFoundError(path)
                os.utime(path)
            except OSError:
                with self.guard:
                    if path in self.files:
                        self.lost.add(path)
                log(f"lost the lease {path}: another run removed or took it over")
                continue
            with self.guard:
                if path in self.files:
                    self.files[path] = time.monotonic()

    def _write(self, path: pathlib.Path, extra: dict | None = None) -> None:
        """Create the lease file whole (FileExistsError where one exists) and start renewing it: written under a
        private name, then linked to its name (link(2) never replaces a file), so no run ever reads a lease cut short
        by a kill; O_CREAT|O_EXCL where the file system has no hard links."""
        data = json.dumps({**self.record, **(extra or {})})
        private = path.with_name(f".{path.name}.{self.run}.{uuid.uuid4().hex[:8]}.new")
        private.write_text(data)
        try:
            os.link(private, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links here
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(data)
        finally:
            private.unlink(missing_ok=True)
        with self.guard:
            self.files[path] = time.monotonic()
            self.lost.discard(path)

    def folder(self, parent: pathlib.Path, prefix: str, mode: int = 0o755) -> pathlib.Path:
        """parent/<prefix><run>: a folder of this run, with its lease file inside (clean_stale reads it)."""
        path = parent / f"{prefix}{self.run}"
        path.mkdir(mode=mode, parents=True)
        self._write(path / LEASE_FILE)
        return path

    def claim(self, path: pathlib.Path, **extra: object) -> bool:
        """Take the claim file `path` for this run: True when this run now holds it (made here, or a stale one of
        another run broken and made again), False while another live run holds it."""
        for _ in range(2):
            try:
                self._write(path, extra)
                return True
            except FileExistsError:
                if read_lease(path).get("run") == self.run and self.holds(path):
                    return True
                owner = self.owner(path)
                if not lease_stale(path, self.lease_s) or not discard(path):
                    return False
                log(f"took over {path.name} from {owner}, whose lease is stale")
        return False

    def holds(self, path: pathlib.Path) -> bool:
        with self.guard:
            renewed = self.files.get(path)
            lost = path in self.lost
        return renewed is not None and not lost and time.monotonic() - renewed < self.lease_s

    def check(self, path: pathlib.Path) -> None:
        """LeaseLost unless this run still holds `path` (renewed within the lease, and the file is still its own)."""
        if not self.holds(path) or read_lease(path).get("run") != self.run:
            raise LeaseLost(f"this run's claim {path} expired or was taken over by another run (a heartbeat missed for "
                            f"over {self.lease_s:g} s)")

    def release(self, path: pathlib.Path) -> None:
        """Give the claim up (removed only while it is still this run's)."""
        with self.guard:
            self.files.pop(path, None)
            self.lost.discard(path)
        if read_lease(path).get("run") == self.run:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def locked(self, path: pathlib.Path, wait_s: float | None = None) -> Iterator[None]:
        """Hold the lock file `path` (a claim) for a short write: waits at most wait_s (default: the lease, after
        which a lock of a stalled run is stale and taken over), then LeaseLost."""
        deadline = time.monotonic() + (self.lease_s + 2 * self.heartbeat_s if wait_s is None else wait_s)
        while not self.claim(path):
            if time.monotonic() > deadline:
                raise LeaseLost(f"{path} stayed locked by {self.owner(path)}")
            time.sleep(0.05)
        try:
            yield
        finally:
            self.release(path)

    def owner(self, path: pathlib.Path) -> str:
        """Who holds a claim, for messages: 'run R (pid P on host H)'."""
        record = read_lease(path)
        return f"run {record.get('run', '?')} (pid {record.get('pid', '?')} on host {record.get('host', '?')})"
