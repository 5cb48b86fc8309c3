"""Folder batches for the headless runner: the workflow once per file of a folder (sorted), the files each run
writes moved into one output folder per input, a progress line per item, resume from the manifest, a summary table.

    run_workflow.py WORKFLOW --batch-input NODE.INPUT=FOLDER [--output-dir OUT] [--server URL ...]

OUT/manifest.jsonl gets one JSON line per item run: {"input", "outputs", "reported", "seconds", "status", "error",
"server", "run"}. An item whose last line says "ok", with as many files as its run reported, all still there, is
skipped when the batch runs again. A failing item is reported and the batch goes on. Nothing this batch did not
write is overwritten: a file that would land on an existing name gets a "-2", "-3" ... suffix.

Several runs may share one output folder (two GPUs, two containers, two machines on a network folder): each item is
claimed in OUT/.vcut-claims/ (a file made with O_CREAT|O_EXCL and kept by the run's lease, common.Lease) while it
runs, so a run takes only the items nobody holds and leaves the others to their run; the manifest is read again
after each claim, so an item another run finished meanwhile is not run twice. In process (local.py) or on ComfyUI
servers (remote.py); both share the items, the claims, the manifest and the summary here. Nothing here imports
ComfyUI at module level."""
from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import json
import os
import pathlib
import re
import sys
from typing import TYPE_CHECKING, Any

from .common import (
    Lease,
    LeaseLost,
    RunnerError,
    apply_overrides,
    clean_stale,
    inside,
    log,
    matching_nodes,
    move_new,
    safe_name,
)

if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

MANIFEST = "manifest.jsonl"
CLAIMS = ".vcut-claims"  # OUT/.vcut-claims/<item>.claim: the run that holds each running item
# ComfyUI's loaders read a file name ending in "[output]", "[input]" or "[temp]" as an annotated path into another
# folder (folder_paths.annotated_filepath, 0.8.0 to 0.30.0): such a file is passed on under a name that ends "(...)"
ANNOTATION = re.compile(r"\[(output|input|temp)\]$")


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
    """One run of the workflow: `path` is the input file (None: the workflow as it is), `name` its output folder;
    a --sweep item has no file but its grid point's values (`sweep`) and the prompt with them set (sweep.py)."""
    path: pathlib.Path | None
    name: str
    index: int = 0
    attempts: int = 0
    sweep: dict | None = None
    prompt: dict | None = None

    @property
    def key(self) -> str | None:
        """What the manifest and the claims know the item by: its input file, or its sweep values."""
        if self.path is not None:
            return str(self.path)
        if self.sweep:
            return "sweep: " + "; ".join(f"{k}={json.dumps(v)}" for k, v in self.sweep.items())
        return None

    @property
    def label(self) -> str:
        return safe_name(self.path.name) if self.path else self.name if self.sweep else "workflow"

    @property
    def input_name(self) -> str:
        """The name the file is handed to ComfyUI under: control characters as "_", and a name that ComfyUI would
        read as an annotated path ("x.png [output]") ending in "(output)" instead."""
        return ANNOTATION.sub(lambda m: f"({m.group(1)})", safe_name(self.path.name))


@dataclasses.dataclass
class Result:
    item: Item
    status: str  # "ok", "failed", "skipped" (done in an earlier run) or "other" (another run holds or ran it)
    outputs: list[str]
    seconds: float = 0.0
    error: str | None = None
    server: str | None = None
    reported: int | None = None  # files the run reported writing (an "ok" item keeps them all)
    metrics: dict | None = None  # a --sweep item's numbers (sweep.Sweep.measure), kept in the manifest for resume

    def record(self, run: str | None = None) -> dict:
        record = {"input": self.item.key, "outputs": self.outputs,
                  "reported": len(self.outputs) if self.reported is None else self.reported,
                  "seconds": self.seconds, "status": self.status, "error": self.error,
                  "server": self.server, "run": run}
        if self.item.sweep:
            record["sweep"] = {"values": self.item.sweep, **(self.metrics or {})}
        return record


def list_items(folder: pathlib.Path, reserved: frozenset[str] = frozenset()) -> list[Item]:
    """The folder's files (not its subfolders or hidden files) in sorted order; each output folder is named after
    the file's stem, or its whole name where two files share a stem or the stem is a `reserved` name (the manifest's,
    when it lies in the output folder). Linear in the number of files (one scan, one count of the stems)."""
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_file())
    files = [folder / name for name in names]
    stems = collections.Counter(p.stem for p in files)
    return [Item(p, safe_name(p.stem if stems[p.stem] == 1 and p.stem not in reserved else p.name), i + 1)
            for i, p in enumerate(files)]


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
    """OUT/manifest.jsonl: appended one line per item run (one O_APPEND write each, flushed at once, so an interrupted
    batch keeps what it finished; Batch.commit appends under a lock file, so runs on several machines sharing the file
    never mix their lines); read back to skip finished items, and read again for the lines other runs append."""

    def __init__(self, path: pathlib.Path, run: str | None = None) -> None:
        self.path, self.run = path, run
        self.done: dict[str, dict] = {}  # input -> its latest record
        self.others: dict[str, dict] = {}  # input -> the latest record another run wrote while this one ran
        self.offset = 0
        if path.is_dir():
            raise RunnerError(f"--manifest {path} is a folder: give the manifest's file name, e.g. {path / MANIFEST}")
        try:  # before the first item runs: a manifest that cannot be written is refused now, not after an item
            path.parent.mkdir(parents=True, exist_ok=True)
            open(path, "a").close()
        except OSError as error:
            raise RunnerError(f"cannot write the manifest {path}: {error.strerror or error}") from None
        self.read(initial=True)

    def read(self, initial: bool = False) -> None:
        """The complete lines appended since the last read (a line still being written is left for the next)."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        data = data[:data.rfind(b"\n") + 1]
        self.offset += len(data)
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interruption
            if isinstance(record, dict) and isinstance(record.get("input"), str):
                self.done[record["input"]] = record
                if not initial and record.get("run") != self.run:
                    self.others[record["input"]] = record

    def finished(self, item: Item) -> dict | None:
        """The latest record of an item that finished: "ok", as many files as its run reported (a line without the
        count: at least one file), and all of them still there."""
        record = self.done.get(item.key) if item.key else None
        if not record or record.get("status") != "ok" or not isinstance(record.get("outputs"), list):
            return None
        outputs, reported = record["outputs"], record.get("reported")
        if len(outputs) < (reported if isinstance(reported, int) else 1):
            return None
        return record if all(pathlib.Path(p).is_file() for p in outputs) else None

    def append(self, result: Result) -> None:
        data = (json.dumps(result.record(self.run)) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, data)
            while written < len(data):  # not expected for a regular file; never lose the rest of the line
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)


def place(source: pathlib.Path, item_dir: pathlib.Path, relative: pathlib.Path) -> pathlib.Path:
    """Move one written file into the item's output folder (same subfolder and name made safe, never over another
    file, even one another program makes at the same moment)."""
    return move_new(source, inside(item_dir, str(relative.parent), relative.name))


def item_line(result: Result, total: int) -> str:
    where = f" on {result.server}" if result.server else ""
    head = f"[{result.item.index}/{total}] {result.item.label}"
    if result.status == "ok":
        return f"{head}: ok{where} in {result.seconds:.2f} s, {len(result.outputs)} file(s)"
    if result.status == "skipped":
        return f"{head}: skipped, done earlier ({len(result.outputs)} file(s))"
    if result.status == "other":
        return f"{head}: left to another run, {result.error}"
    return f"{head}: FAILED{where}: {result.error.splitlines()[0]}"


def summary(results: list[Result], manifest: pathlib.Path, elapsed: float) -> int:
    """The summary table on stderr, the written files on stdout; exit status 0 when no item failed, else 1."""
    width = max([len(r.item.label) for r in results] + [4])
    lines = [f"{'item':<{width}}  {'status':<7}  {'seconds':>7}  {'files':>5}  server / error"]
    for r in sorted(results, key=lambda r: r.item.index):
        detail = (r.error or "").splitlines()[0] if r.status in ("failed", "other") else (r.server or "")
        lines.append(f"{r.item.label:<{width}}  {r.status:<7}  {r.seconds:>7.2f}  {len(r.outputs):>5}  {detail}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed", "other")}
    ran = counts["ok"] + counts["failed"]
    rate = f", {60.0 * ran / elapsed:.1f} items/min" if ran and elapsed > 0 else ""
    others = f", {counts['other']} left to other runs" if counts["other"] else ""
    lines.append(f"{len(results)} items: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed"
                 f"{others} in {elapsed:.1f} s{rate}; manifest {manifest}")
    print("\n".join(lines), file=sys.stderr, flush=True)
    for r in sorted(results, key=lambda r: r.item.index):
        for path in r.outputs:
            print(path, flush=True)
    return 1 if counts["failed"] else 0


@dataclasses.dataclass
class Batch:
    """A planned batch: its items, the nodes that take each file, the manifest, the items done earlier, and this
    run's lease, which holds the claim of each item while it runs (OUT/.vcut-claims/)."""
    items: list[Item]
    targets: list[str]
    input: BatchInput | None
    manifest: Manifest
    skipped: list[Result]
    lease: Lease
    claims: pathlib.Path
    sweep: Any = None  # sweep.Sweep for a --sweep run: the grid, and the table written at the end

    def claim_path(self, item: Item) -> pathlib.Path:
        return self.claims / (hashlib.sha256(item.name.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".claim")

    def start(self, item: Item) -> Result | None:
        """Claim the item for this run: None when this run now holds it and runs it; else its result here, "skipped"
        (finished by an earlier run or by another run meanwhile) or "other" (another live run holds it, or failed it
        while this run was running)."""
        if item.key is None:
            return None
        path = self.claim_path(item)
        self.claims.mkdir(parents=True, exist_ok=True)
        if not self.lease.claim(path, item=item.name, input=item.key):
            return Result(item, "other", [], error=f"which holds it: {self.lease.owner(path)}")
        self.manifest.read()  # what other runs recorded up to now
        record = self.manifest.finished(item)
        if record:
            self.lease.release(path)
            return Result(item, "skipped", record["outputs"], record.get("seconds", 0.0), server=record.get("server"),
                          metrics=record.get("sweep"))
        other = self.manifest.others.get(item.key)
        if other:  # failed in a run that ran beside this one: not retried twice at once (the next run retries it)
            self.lease.release(path)
            error = (other.get("error") or "").splitlines()[0] if other.get("error") else ""
            return Result(item, "other", [], error=f"which failed it (run {other.get('run')}): {error}")
        return None

    def check(self, item: Item) -> None:
        """LeaseLost unless this run still holds the item (before its files are placed)."""
        if item.key is not None:
            self.lease.check(self.claim_path(item))

    def commit(self, result: Result) -> Result:
        """Record the item's result in the manifest while this run still holds it, then give the claim up; an item
        whose claim was lost is failed here and not recorded (the run that took it over records it)."""
        lock = self.manifest.path.with_name(f".{self.manifest.path.name}.lock")  # one writer at a time, any host
        try:
            self.check(result.item)
            with self.lease.locked(lock):
                self.manifest.append(result)
        except LeaseLost as error:
            return dataclasses.replace(result, status="failed", error=f"not recorded: {error}")
        if result.item.key is not None:
            self.lease.release(self.claim_path(result.item))
        return result


def plan(options: argparse.Namespace, output_dir: pathlib.Path, prompt: dict, node_classes: Mapping[str, Any],
         lease: Lease) -> Batch:
    """The batch (items, targets, manifest, the items done earlier); a run without --batch-input is one item whose
    outputs go straight into the output folder. Refuses, before anything runs, a manifest inside the input folder
    (it would become an input) and an item whose output folder is taken by a file."""
    batch = BatchInput.parse(options.batch_input) if options.batch_input else None
    manifest_path = (pathlib.Path(options.manifest) if options.manifest else output_dir / MANIFEST).resolve()
    claims = output_dir / CLAIMS
    if batch is not None and manifest_path.parent == batch.folder:
        flag = "--manifest" if options.manifest else "--output-dir"
        raise RunnerError(f"{flag}: the manifest {manifest_path} would lie in the --batch-input folder {batch.folder}, "
                          "where the next run would take it for an input; give an output folder outside it (e.g. "
                          f"--output-dir {batch.folder.parent / (batch.folder.name + '-out')}) or --manifest FILE "
                          "elsewhere")
    sweep = None
    if getattr(options, "sweep", None):  # the grid's points as items (sweep.py)
        from .sweep import plan as sweep_plan
        sweep, points = sweep_plan(options, prompt, node_classes)
        items = [Item(None, p.name, p.index, sweep=p.values, prompt=p.prompt) for p in points]
    manifest = Manifest(manifest_path, lease.run)
    if batch is None and sweep is None:
        return Batch([Item(None, "", 1)], [], None, manifest, [], lease, claims)
    targets = batch_targets(prompt, batch, node_classes) if batch else []
    # lease files a killed run was still writing (Lease._write), once stale
    clean_stale(claims, ".", lease.lease_s)
    clean_stale(manifest_path.parent, f"..{manifest_path.name}.lock.", lease.lease_s)
    if batch is not None:
        reserved = frozenset({manifest_path.name} if manifest_path.parent == output_dir else ())
        items = list_items(batch.folder, reserved)
    if not items:
        raise RunnerError(f"--batch-input: {batch.folder} holds no files")
    for item in items:
        folder = output_dir / item.name
        if folder.exists() and not folder.is_dir():
            raise RunnerError(f"--output-dir: {folder} is a file, but the outputs of {item.key} go into a folder of "
                              f"that name; move the file away or give another --output-dir")
    skipped = []
    for item in items:
        record = manifest.finished(item)
        if record:
            skipped.append(Result(item, "skipped", record["outputs"], record.get("seconds", 0.0),
                                  server=record.get("server"), metrics=record.get("sweep")))
    if batch is not None:
        log(f"batch of {len(items)} file(s) from {batch.folder} into {batch.node}.{batch.input} "
            f"({len(targets)} node(s)); {len(skipped)} done earlier")
    elif skipped:
        log(f"{len(skipped)} of the sweep's {len(items)} combination(s) done earlier")
    return Batch(items, targets, batch, manifest, skipped, lease, claims, sweep)
