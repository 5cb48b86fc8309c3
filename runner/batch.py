"""Folder batches for the headless runner: the workflow once per file of a folder (sorted), the files each run
writes moved into one output folder per input, a progress line per item, resume from the manifest, a summary table.

    run_workflow.py WORKFLOW --batch-input NODE.INPUT=FOLDER [--output-dir OUT] [--server URL ...]

OUT/manifest.jsonl gets one JSON line per item run: {"input", "outputs", "seconds", "status", "error", "server"}.
An item whose last line says "ok" and whose outputs all exist is skipped when the batch runs again. A failing item
is reported and the batch goes on. Nothing this batch did not write is overwritten: a file that would land on an
existing name gets a "-2", "-3" ... suffix. In process (this module) or on ComfyUI servers (remote.py); both share
the items, the manifest and the summary here. Nothing here imports ComfyUI at module level."""
from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import sys
import time
import uuid

from .headless import (
    HeadlessServer,
    RunnerError,
    apply_overrides,
    format_validation,
    hook_progress,
    log,
    new_executor,
    written_files,
)

MANIFEST = "manifest.jsonl"
STAGING = ".vcut-batch-"  # the in-process batch's staging folder (output) and input link: .vcut-batch-<pid>-<id>
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def safe_name(name: str) -> str:
    """A file or folder name with its control characters (newline, tab, escape ...) replaced by "_": such a name
    neither splits the printed list of written files (one path a line) nor breaks an HTTP header."""
    return CONTROL_CHARACTERS.sub("_", name)


def inside(folder: pathlib.Path, subfolder, filename) -> pathlib.Path:
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


@dataclasses.dataclass
class BatchInput:
    """--batch-input NODE.INPUT=FOLDER: which workflow input takes each file, and the folder of files."""
    node: str
    input: str
    folder: pathlib.Path

    @classmethod
    def parse(cls, text: str) -> BatchInput:
        key, _, raw = text.partition("=")
        node, _, name = key.rpartition(".")
        if not node or not name or not raw:
            raise RunnerError(f"--batch-input {text!r}: expected NODE.INPUT=FOLDER, e.g. LoadImage.image=photos/")
        folder = pathlib.Path(raw).expanduser()
        if not folder.is_dir():
            raise RunnerError(f"--batch-input {text!r}: {raw} is not a folder")
        return cls(node, name, folder.resolve())


@dataclasses.dataclass
class Item:
    """One run of the workflow: `path` is the input file (None: the workflow as it is), `name` its output folder."""
    path: pathlib.Path | None
    name: str
    index: int = 0
    attempts: int = 0

    @property
    def label(self) -> str:
        return safe_name(self.path.name) if self.path else "workflow"


@dataclasses.dataclass
class Result:
    item: Item
    status: str  # "ok", "failed" or "skipped" (done in an earlier run)
    outputs: list[str]
    seconds: float = 0.0
    error: str | None = None
    server: str | None = None

    def record(self) -> dict:
        return {"input": str(self.item.path) if self.item.path else None, "outputs": self.outputs,
                "seconds": round(self.seconds, 3), "status": self.status, "error": self.error,
                "server": self.server}


def list_items(folder: pathlib.Path) -> list[Item]:
    """The folder's files (not its subfolders or hidden files) in sorted order; each output folder is named after
    the file's stem, or its whole name where two files share a stem."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    stems = [p.stem for p in files]
    return [Item(p, safe_name(p.stem if stems.count(p.stem) == 1 else p.name), i + 1) for i, p in enumerate(files)]


def batch_targets(prompt: dict, batch: BatchInput, node_classes) -> list[str]:
    """Node ids whose `batch.input` takes the file name; refuses inputs that do not take a file name (COMBO/STRING)."""
    # the same matching (id, else title or type) and messages as --set
    apply_overrides(copy.deepcopy(prompt), [f"{batch.node}.{batch.input}=x"], node_classes)
    targets = [batch.node] if batch.node in prompt else [
        k for k, v in prompt.items() if v.get("_meta", {}).get("title") == batch.node or v["class_type"] == batch.node]
    for key in targets:
        types = node_classes[prompt[key]["class_type"]].INPUT_TYPES()
        spec = {**(types.get("required") or {}), **(types.get("optional") or {})}[batch.input]
        kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
        if not (isinstance(kind, (list, tuple)) or kind in ("COMBO", "STRING")):
            raise RunnerError(f"--batch-input {batch.node}.{batch.input}: node {key} ({prompt[key]['class_type']}) "
                              f"input {batch.input!r} is a {kind} input, not a file name; use a file input such as "
                              "LoadImage.image or LoadVideo.file")
    return targets


def with_input(prompt: dict, targets: list[str], name: str, value: str) -> dict:
    prompt = copy.deepcopy(prompt)
    for key in targets:
        prompt[key]["inputs"][name] = value
    return prompt


class Manifest:
    """OUT/manifest.jsonl: appended one line per item run (flushed at once, so an interrupted batch keeps what it
    finished); read back to skip finished items."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.done: dict[str, dict] = {}
        if path.is_dir():
            raise RunnerError(f"--manifest {path} is a folder: give the manifest's file name, e.g. {path / MANIFEST}")
        try:  # before the first item runs: a manifest that cannot be written is refused now, not after an item
            path.parent.mkdir(parents=True, exist_ok=True)
            open(path, "a").close()
        except OSError as error:
            raise RunnerError(f"cannot write the manifest {path}: {error.strerror or error}") from None
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by an interruption
                if isinstance(record, dict) and record.get("input"):
                    self.done[record["input"]] = record

    def finished(self, item: Item) -> dict | None:
        """The earlier record of an item that finished and whose outputs all still exist."""
        record = self.done.get(str(item.path)) if item.path else None
        if record and record.get("status") == "ok" and all(pathlib.Path(p).is_file() for p in record["outputs"]):
            return record
        return None

    def append(self, result: Result) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(result.record()) + "\n")
            f.flush()
            os.fsync(f.fileno())


def free_path(path: pathlib.Path) -> pathlib.Path:
    """`path`, or `stem-2.ext`, `stem-3.ext` ... where a file of that name exists: nothing is overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def place(source: pathlib.Path, item_dir: pathlib.Path, relative: pathlib.Path) -> pathlib.Path:
    """Move one written file into the item's output folder (same subfolder and name made safe, never over another
    file)."""
    target = free_path(inside(item_dir, str(relative.parent), relative.name))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))
    return target


def item_line(result: Result, total: int) -> str:
    where = f" on {result.server}" if result.server else ""
    if result.status == "ok":
        return (f"[{result.item.index}/{total}] {result.item.label}: ok{where} in {result.seconds:.2f} s, "
                f"{len(result.outputs)} file(s)")
    if result.status == "skipped":
        return (f"[{result.item.index}/{total}] {result.item.label}: skipped, done earlier "
                f"({len(result.outputs)} file(s))")
    return f"[{result.item.index}/{total}] {result.item.label}: FAILED{where}: {result.error.splitlines()[0]}"


def summary(results: list[Result], manifest: pathlib.Path, elapsed: float) -> int:
    """The summary table on stderr, the written files on stdout; exit status 0 when no item failed, else 1."""
    width = max([len(r.item.label) for r in results] + [4])
    lines = [f"{'item':<{width}}  {'status':<7}  {'seconds':>7}  {'files':>5}  server / error"]
    for r in sorted(results, key=lambda r: r.item.index):
        detail = (r.error or "").splitlines()[0] if r.status == "failed" else (r.server or "")
        lines.append(f"{r.item.label:<{width}}  {r.status:<7}  {r.seconds:>7.2f}  {len(r.outputs):>5}  {detail}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    ran = counts["ok"] + counts["failed"]
    rate = f", {60.0 * ran / elapsed:.1f} items/min" if ran and elapsed > 0 else ""
    lines.append(f"{len(results)} items: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed "
                 f"in {elapsed:.1f} s{rate}; manifest {manifest}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    for r in sorted(results, key=lambda r: r.item.index):
        for path in r.outputs:
            print(path, flush=True)
    return 1 if counts["failed"] else 0


def plan(options, output_dir: pathlib.Path, prompt: dict, node_classes):
    """(items, targets, batch input, manifest, skipped results) of a batch; a run without --batch-input is one item
    whose outputs go straight into the output folder."""
    batch = BatchInput.parse(options.batch_input) if options.batch_input else None
    manifest = Manifest(pathlib.Path(options.manifest) if options.manifest else output_dir / MANIFEST)
    if batch is None:
        return [Item(None, "", 1)], [], None, manifest, []
    targets = batch_targets(prompt, batch, node_classes)
    items = list_items(batch.folder)
    if not items:
        raise RunnerError(f"--batch-input: {batch.folder} holds no files")
    skipped = []
    for item in items:
        record = manifest.finished(item)
        if record:
            skipped.append(Result(item, "skipped", record["outputs"], record.get("seconds", 0.0),
                                  server=record.get("server")))
    log(f"batch of {len(items)} file(s) from {batch.folder} into {batch.node}.{batch.input} "
        f"({len(targets)} node(s)); {len(skipped)} done earlier")
    return items, targets, batch, manifest, skipped


def stop(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_in_process(options, prompt: dict, nodes, execution, output_dir: pathlib.Path) -> int:
    """The batch in this process: one PromptExecutor for every item (models stay loaded between items, as in a
    server); ComfyUI writes into a staging folder, and each item's files are then moved into OUT/<item>/."""
    import folder_paths
    items, targets, batch, manifest, skipped = plan(options, output_dir, prompt, nodes.NODE_CLASS_MAPPINGS)
    done = {r.item.index for r in skipped}
    results = list(skipped)
    for r in skipped:
        log(item_line(r, len(items)))
    input_dir = pathlib.Path(folder_paths.get_input_directory())
    for folder in (output_dir, input_dir):  # what killed batches left (their process is gone)
        clean_stale(folder, STAGING)
    staging = output_dir / owned_name(STAGING)
    inbox = input_dir / staging.name if batch else None  # each item's file is put here while it runs
    folder_paths.set_output_directory(str(staging))
    server = HeadlessServer(prompt)
    hook_progress(server)
    executor = new_executor(execution, server, execution.CacheType.CLASSIC)
    start = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, stop)  # a terminated batch still removes its staging folders
    try:
        for item in items:
            if item.index in done:
                continue
            result = run_item(item, prompt, targets, batch, inbox, staging, output_dir, execution, executor, server)
            manifest.append(result)
            results.append(result)
            log(item_line(result, len(items)))
    finally:
        signal.signal(signal.SIGTERM, previous)
        for folder in (staging, inbox):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    return summary(results, manifest.path, time.perf_counter() - start)


def stage_input(source: pathlib.Path, inbox: pathlib.Path) -> pathlib.Path:
    """The item's file inside ComfyUI's input folder under a safe name: a hard link, else a copy. Not a symbolic
    link: ComfyUI 0.30.0's folder_paths.get_annotated_filepath refuses a path whose real path leaves the input
    folder (0.8.0 followed links)."""
    inbox.mkdir(parents=True, exist_ok=True)
    staged = inbox / safe_name(source.name)
    staged.unlink(missing_ok=True)
    try:
        os.link(source, staged)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, staged)
    return staged


def run_item(item, prompt, targets, batch, inbox, staging, output_dir, execution, executor, server) -> Result:
    began = time.perf_counter()
    staged = None
    try:
        if batch:
            staged = stage_input(item.path, inbox)
        result = execute_item(item, prompt, targets, batch, staged, staging, output_dir, execution, executor, server)
    except Exception as error:  # one failing input never stops the batch
        result = Result(item, "failed", [], time.perf_counter() - began, f"{type(error).__name__}: {error}")
    finally:
        if staged is not None:
            staged.unlink(missing_ok=True)
    if result.error and staged is not None:  # name the user's file, not the copy the batch ran
        result.error = result.error.replace(str(staged), str(item.path)).replace(
            f"{staged.parent.name}/{staged.name}", str(item.path))
    result.seconds = time.perf_counter() - began
    return result


def execute_item(item, prompt, targets, batch, staged, staging, output_dir, execution, executor, server) -> Result:
    """Validate and execute one item's prompt (seconds: set by run_item); its files into OUT/<item>/."""
    item_prompt = with_input(prompt, targets, batch.input, f"{staged.parent.name}/{staged.name}") if batch else prompt
    server.prompt, server.errors = item_prompt, []
    prompt_id = str(uuid.uuid4())
    server.last_prompt_id = prompt_id
    valid = asyncio.run(execution.validate_prompt(prompt_id, item_prompt, None))
    if not valid[0]:
        error = format_validation(valid[1] or {}, valid[3] or {}, item_prompt)
        return Result(item, "failed", [], 0.0, error)
    staging.mkdir(parents=True, exist_ok=True)
    executor.execute(item_prompt, prompt_id, {"client_id": server.client_id}, valid[2])
    if not executor.success:
        errors = server.errors or [d for e, d in executor.status_messages if e == "execution_error"]
        error = "\n".join(f"{server.describe(d.get('node_id'))}: {d.get('exception_type', '')}: "
                          f"{d.get('exception_message', '').strip()}" for d in errors) or "execution failed"
        return Result(item, "failed", [], 0.0, error)
    item_dir = output_dir / item.name
    outputs = [str(place(path, item_dir, path.relative_to(staging)))
               for _, path in written_files(executor.history_result, str(staging)) if path.is_file()]
    return Result(item, "ok", outputs)
