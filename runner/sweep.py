"""--sweep: one workflow over a grid of widget values, with a table of what each combination cost and how far its
video is from the exact one.

    run_workflow.py WORKFLOW --sweep "Cut Step Scheduler.cut_step=13,17,21" --sweep "UNet Feature Cache.interval=1,2"

Each --sweep is NODE.INPUT=V1,V2,... (NODE and values as in --set); the grid is every combination, the first --sweep
varying slowest. Each combination is one batch item (batch.py: claims, manifest, resume), so an interrupted sweep
goes on where it stopped. What each item measures comes from what the pack's nodes report while it runs (the line
they log and show as the node's progress text, nodes/run.py's report), read here, never computed again:
- the sampling run's report, "VCUT run: ...; S GMACs vs B unpatched = R x; T s" -> GMACs, MACs ratio R
  (this run's UNet MACs over the unpatched run's: every call computed in full and guided, with the original
  cross-attention), sampling seconds T;
- Video Compare's summary, "<candidate> vs <reference>: mean PSNR P dB, ..., SSIM S, temporal difference D%" -> P, S,
  D. The reference is the workflow's own: what feeds Video Compare's `reference` input (e.g. the plain sampler).
  ComfyUI keeps the outputs of nodes whose inputs did not change between prompts, so it is sampled once (once per
  server), unless a swept input feeds it too.
The table goes to OUT/sweep.csv and OUT/sweep.md (and stderr), one row per combination in grid order. Values outside
an input's range or choices, and unknown nodes or inputs, are refused (exit 2) before anything runs. No ComfyUI
import."""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import pathlib
import re
import struct
from typing import TYPE_CHECKING, Any, NamedTuple

from .common import RunnerError, apply_overrides, log, matching_nodes
from .convert import input_specs

if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_POINTS = 10000  # a grid larger than this is a typo (a value list pasted twice), not a plan
TABLE = "sweep"  # OUT/sweep.csv, OUT/sweep.md
PROGRESS_TEXT = 3  # ComfyUI's BinaryEventTypes.TEXT (protocol.py, 0.8.0 and 0.30.0): a node's progress text
COST = re.compile(r"^(?P<feature>[^:]+): .*; (?P<spent>[0-9.e+-]+) GMACs vs (?P<base>[0-9.e+-]+) "
                  r"unpatched(?: = (?P<ratio>[0-9.e+-]+)x)?; "
                  r"(?P<seconds>[0-9.]+) s$", re.S)
COMPARE = "Video Compare: "
NUMBERS = {"psnr_db": r"PSNR (inf|[0-9.e+-]+)", "ssim": r"SSIM (>?[0-9.e+-]+)",
           "temporal_difference_pct": r"temporal difference (inf|n/a|[0-9.e+-]+)"}


@dataclasses.dataclass(frozen=True)
class Axis:
    """One --sweep: NODE.INPUT as typed, the values, and the nodes it sets."""
    text: str
    key: str
    values: tuple
    raws: tuple
    targets: tuple

    @property
    def column(self) -> str:
        return self.key


def _split(text: str) -> tuple[str, list[tuple[Any, str]]]:
    key, sep, raw = text.partition("=")
    if not sep or "." not in key or not raw.strip():
        raise RunnerError(f"--sweep {text!r}: expected NODE.INPUT=V1,V2,..., e.g. --sweep "
                          "\"Cut Step Scheduler.cut_step=13,17,21\"")
    values = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            raise RunnerError(f"--sweep {text!r}: an empty value in the list; separate values by single commas")
        try:
            values.append((json.loads(part), part))
        except ValueError:
            values.append((part, part))
    return key, values


def _resolve(prompt: dict, key: str) -> tuple[list[str], str]:
    """The nodes and the input NODE.INPUT names, the way --set reads it (NODE.a.b: node NODE, input a.b)."""
    for cut in [i for i, c in enumerate(key) if c == "."][::-1]:
        targets = matching_nodes(prompt, key[:cut])
        if targets:
            return targets, key[cut + 1:]
    return [], key.rsplit(".", 1)[1]


def _spec_limits(spec: Any) -> tuple[str, dict, list | None]:
    typ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    choices = list(typ) if isinstance(typ, (list, tuple)) else opts.get("options") if typ == "COMBO" else None
    return ("COMBO" if choices is not None else str(typ)), opts, choices


def check_value(text: str, where: str, name: str, spec: Any, value: Any) -> None:
    """RunnerError naming the node's own limit when `value` is outside what the input takes."""
    kind, opts, choices = _spec_limits(spec)
    if choices is not None:
        if value not in choices and str(value) not in choices:
            shown = ", ".join(map(repr, choices[:20])) + (" ..." if len(choices) > 20 else "")
            raise RunnerError(f"--sweep {text!r}: {value!r} is not a choice of {where} input {name!r}; its choices: "
                              f"{shown}")
        return
    if kind in ("INT", "FLOAT"):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind == "INT" and float(value) != int(value)) or not math.isfinite(value):
            raise RunnerError(f"--sweep {text!r}: {value!r} is not {'a whole number' if kind == 'INT' else 'a number'}"
                              f", which {where} input {name!r} takes")
        low, high = opts.get("min"), opts.get("max")
        span = f" (it takes {low if low is not None else '...'} to {high if high is not None else '...'})"
        if low is not None and value < low:
            raise RunnerError(f"--sweep {text!r}: {value!r} is below the minimum of {where} input {name!r}: "
                              f"{low}{span}")
        if high is not None and value > high:
            raise RunnerError(f"--sweep {text!r}: {value!r} is above the maximum of {where} input {name!r}: "
                              f"{high}{span}")
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        raise RunnerError(f"--sweep {text!r}: {value!r} is not true or false, which {where} input {name!r} takes")


def parse_axes(texts: list[str], prompt: dict, node_classes: Mapping[str, Any]) -> list[Axis]:
    """The --sweep options, checked against the workflow and the running ComfyUI's node definitions: unknown nodes
    or inputs (named with what exists, as --set names them), links, values outside a widget's range or choices."""
    axes, seen = [], {}
    for text in texts:
        key, values = _split(text)
        try:  # the same names and messages as --set, for every value
            apply_overrides(copy.deepcopy(prompt), [f"{key}={raw}" for _, raw in values], node_classes)
        except RunnerError as error:
            message = re.sub(r"^--set '[^']*'|^--set \"[^\"]*\"", f"--sweep {text!r}", str(error))
            raise RunnerError(message) from None
        targets, name = _resolve(prompt, key)
        for target in targets:
            cls = node_classes[prompt[target]["class_type"]]
            spec = input_specs(cls.INPUT_TYPES(), prompt[target]["inputs"])[name]
            title = (prompt[target].get("_meta") or {}).get("title")
            where = f"node {target} ({prompt[target]['class_type']}{', ' + repr(title) if title else ''})"
            for value, _ in values:
                check_value(text, where, name, spec, value)
            if (target, name) in seen:
                raise RunnerError(f"--sweep {text!r}: {where} input {name!r} is already swept by --sweep "
                                  f"{seen[target, name]!r}; give its values in one --sweep")
            seen[target, name] = text
        axes.append(Axis(text, key, tuple(v for v, _ in values), tuple(r for _, r in values), tuple(targets)))
    return axes


class Point(NamedTuple):
    """One combination: its output folder name, its number (from 1), the values by NODE.INPUT, its prompt. batch.py
    makes it a batch Item (this module does not import batch.py: runner modules import one way)."""
    name: str
    index: int
    values: dict
    prompt: dict


@dataclasses.dataclass
class Sweep:
    """The grid: its axes and, per item, the values and the prompt with them set."""
    axes: list[Axis]
    compare_nodes: list[str]

    def points(self, prompt: dict, node_classes: Mapping[str, Any]) -> list[Point]:
        points = list(itertools.product(*(range(len(a.values)) for a in self.axes)))
        width = len(str(len(points)))
        found = []
        for index, point in enumerate(points, 1):
            settings = [(a.key, a.values[i], a.raws[i]) for a, i in zip(self.axes, point, strict=True)]
            item_prompt = copy.deepcopy(prompt)
            apply_overrides(item_prompt, [f"{key}={raw}" for key, _, raw in settings], node_classes)
            name = f"{index:0{width}d}_" + "_".join(
                re.sub(r"[^\w.=+-]", "-", f"{key.rsplit('.', 1)[1]}={raw}") for key, _, raw in settings)
            found.append(Point(name, index, {key: value for key, value, _ in settings}, item_prompt))
        return found

    def measure(self, reports: list[tuple[str | None, str]], prompt: dict) -> dict:
        """The item's numbers from the reports its nodes made ((node id, line) in the order made): per run report
        "<node> <feature>": GMACs, MACs ratio, sampling seconds; per Video Compare node: PSNR, SSIM, temporal
        difference, and the summary line."""
        costs, compares = {}, {}
        for node, line in reports:
            line = line.strip()
            cost = COST.match(line)
            if cost:
                ratio = cost["ratio"]
                costs[f"{node}|{cost['feature']}"] = {
                    "node": node, "feature": cost["feature"], "gmacs": float(cost["spent"]),
                    "baseline_gmacs": float(cost["base"]), "macs_ratio": float(ratio) if ratio else None,
                    "sampling_s": float(cost["seconds"])}
            elif line.startswith(COMPARE):
                summary = line[len(COMPARE):]
                numbers = {"node": node, "summary": summary}
                for column, pattern in NUMBERS.items():
                    found = re.search(pattern, summary)
                    numbers[column] = _number(found.group(1)) if found else None
                if summary.split(": ", 1)[-1].startswith("identical"):
                    numbers["psnr_db"], numbers["ssim"] = "inf", 1.0
                compares[str(node)] = numbers
        return {"cost": list(costs.values()), "compare": list(compares.values())}

    def table(self, results: list[Any]) -> tuple[list[str], list[list[Any]]]:
        """Columns and rows (grid order): the swept values, status, seconds, then per run report and per Video
        Compare node its numbers (a node's id in the column name where the workflow has several)."""
        measured = [r.metrics or {} for r in results]
        cost_keys = list(dict.fromkeys((c["node"], c["feature"]) for m in measured for c in m.get("cost", [])))
        compare_keys = list(dict.fromkeys(c["node"] for m in measured for c in m.get("compare", [])))
        columns = [a.column for a in self.axes] + ["status", "seconds"]
        for node, feature in cost_keys:
            tag = f" ({feature}, node {node})" if len(cost_keys) > 1 else ""
            columns += [f"macs_ratio{tag}", f"gmacs{tag}", f"sampling_s{tag}"]
        for node in compare_keys:
            tag = f" (node {node})" if len(compare_keys) > 1 else ""
            columns += [f"{c}{tag}" for c in NUMBERS]
        rows = []
        for result, metrics in sorted(zip(results, measured, strict=True), key=lambda rm: rm[0].item.index):
            row = [result.item.sweep.get(a.key) for a in self.axes]
            row += [result.status, round(result.seconds, 2)]
            costs = {(c["node"], c["feature"]): c for c in metrics.get("cost", [])}
            for key in cost_keys:
                c = costs.get(key, {})
                row += [c.get("macs_ratio"), c.get("gmacs"), c.get("sampling_s")]
            compares = {c["node"]: c for c in metrics.get("compare", [])}
            for node in compare_keys:
                row += [compares.get(node, {}).get(c) for c in NUMBERS]
            rows.append(row)
        return columns, rows

    def write(self, results: list[Any], output_dir: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
        """OUT/sweep.csv and OUT/sweep.md (written whole each time, from this run's items and those the manifest
        says were done earlier); the markdown table on stderr too."""
        columns, rows = self.table(results)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        text = [f"| {' | '.join(columns)} |", f"|{'|'.join('---' for _ in columns)}|"]
        text += [f"| {' | '.join(_cell(v) for v in row)} |" for row in rows]
        refs = ", ".join(f"node {n}" for n in self.compare_nodes) or "none (the workflow has no Video Compare node)"
        text += ["", f"Reference of the quality columns: the `reference` input of Video Compare ({refs}); "
                 "macs_ratio: the run report's MACs over the unpatched run's; seconds: the whole item "
                 "(the first one includes the reference, which later items take from ComfyUI's cache)."]
        csv_path, md_path = output_dir / f"{TABLE}.csv", output_dir / f"{TABLE}.md"
        csv_path.write_text(buffer.getvalue())
        md_path.write_text("\n".join(text) + "\n")
        log("sweep table:\n" + "\n".join(text))
        log(f"sweep table written: {csv_path}, {md_path}")
        return csv_path, md_path


def _number(text: str) -> float | str:
    """A reported number as a float; "inf" and "n/a" stay text (JSON has no infinity)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def plan(options: Any, prompt: dict, node_classes: Mapping[str, Any]) -> tuple[Sweep, list[Point]]:
    """The sweep's grid (its combinations, for batch.py's items); refused (exit 2) before anything runs when a name
    or a value is wrong."""
    if options.batch_input:
        raise RunnerError("--sweep and --batch-input cannot be combined: sweep one input file at a time (set it with "
                          "--set, e.g. --set LoadImage.image=cat.png)")
    axes = parse_axes(options.sweep, prompt, node_classes)
    count = math.prod(len(a.values) for a in axes)
    if count > MAX_POINTS:
        raise RunnerError(f"--sweep: {count} combinations; keep a sweep to {MAX_POINTS} (split it into several runs)")
    compare_nodes = [k for k, v in prompt.items() if v["class_type"] == "VCUTVideoCompare"]
    if not compare_nodes:
        log("note: the workflow has no Video Compare node: the sweep table has no quality columns")
    sweep = Sweep(axes, compare_nodes)
    points = sweep.points(prompt, node_classes)
    log(f"sweep of {count} combination(s): " + " x ".join(f"{a.key} ({len(a.values)})" for a in axes))
    return sweep, points


class ReportTap(logging.Handler):
    """In this process: the pack's report lines (logger "vcut"), each with the node that was executing."""

    def __init__(self, current_node: Any) -> None:
        super().__init__(logging.INFO)
        self.current_node = current_node
        self.lines: list[tuple[str | None, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append((self.current_node(), record.getMessage()))
        except Exception:  # a report that cannot be read is left out of the table, never stops the run
            pass

    def __enter__(self) -> ReportTap:
        logging.getLogger("vcut").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("vcut").removeHandler(self)

    def take(self) -> list[tuple[str | None, str]]:
        lines, self.lines = self.lines, []
        return lines


def progress_text(data: bytes) -> tuple[str, str] | None:
    """A server's binary WebSocket message -> (node id, text) when it is a node's progress text, else None."""
    try:
        if len(data) < 8 or struct.unpack(">I", data[:4])[0] != PROGRESS_TEXT:
            return None
        size = struct.unpack(">I", data[4:8])[0]
        return data[8:8 + size].decode("utf-8"), data[8 + size:].decode("utf-8")
    except (struct.error, UnicodeDecodeError):
        return None
