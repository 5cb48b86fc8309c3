"""Folder batches for the headless runner: the workflow once per file of a folder (sorted), the files each run
writes moved into one output folder per input, a progress line per item, resume from the manifest, a summary table.

    run_workflow.py WORKFLOW --batch-input NODE.INPUT=FOLDER [--output-dir OUT] [--server URL ...]

OUT/manifest.jsonl gets one JSON line per item run: {"input", "outputs", "seconds", "status", "error", "server"}.
An item whose last line says "ok" and whose outputs all exist is skipped when the batch runs again. A failing item
is reported and the batch goes on. Nothing this batch did not write is overwritten: a file that would land on an
existing name gets a "-2", "-3" ... suffix. In process (local.py) or on ComfyUI servers (remote.py); both share
the items, the manifest and the summary here. Nothing here imports ComfyUI at module level."""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import pathlib
import shutil
import sys
from typing import TYPE_CHECKING, Any

from .common import RunnerError, apply_overrides, free_path, inside, log, matching_nodes, safe_name

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

MANIFEST = "manifest.jsonl"


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


def batch_targets(prompt: dict, batch: BatchInput, node_classes: Mapping[str, Any]) -> list[str]:
    """Node ids whose `batch.input` takes the file name; refuses inputs that do not take a file name (COMBO/STRING)."""
    # the same matching (id, else title or type) and messages as --set
    apply_overrides(copy.deepcopy(prompt), [f"{batch.node}.{batch.input}=x"], node_classes)
    targets = matching_nodes(prompt, batch.node)
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

    def __init__(self, path: pathlib.Path) -> None:
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


def plan(options: argparse.Namespace, output_dir: pathlib.Path, prompt: dict,
         node_classes: Mapping[str, Any]) -> tuple[list[Item], list[str], BatchInput | None, Manifest, list[Result]]:
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
