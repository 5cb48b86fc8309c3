"""run_workflow.py's command line: the parser and the dispatch, to this process (local.py) or to ComfyUI servers
(remote.py); a RunnerError is printed without a traceback and gives the exit status."""
from __future__ import annotations

import argparse
import sys
import traceback

from .common import RunnerError, load_workflow, output_folder


def run(options: argparse.Namespace) -> int:
    workflow = load_workflow(options.workflow)
    if options.output_dir:  # checked before ComfyUI starts or a server is asked
        output_folder(options.output_dir)
    if options.server:  # ComfyUI servers run the workflow: no ComfyUI in this process
        from .remote import run_on_servers
        return run_on_servers(options, workflow)
    from .local import run_local
    return run_local(options, workflow)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_workflow.py", description="Run a ComfyUI workflow JSON (UI or API format) without the browser.")
    parser.add_argument("workflow", help="workflow .json: as saved by ComfyUI (UI format) or exported as API")
    parser.add_argument("--comfyui", help="ComfyUI folder (default: $COMFYUI_PATH, else the ComfyUI this pack is in)")
    parser.add_argument("--set", action="append", metavar="NODE.INPUT=VALUE",
                        help="override an input; NODE is a node id, title or type (all nodes of that type); "
                             "VALUE is parsed as JSON when possible, e.g. --set KSampler.steps=10 "
                             "--set LoadImage.image=cat.png; repeatable")
    parser.add_argument("--input-dir", help="folder that LoadImage / LoadVideo read from (default: ComfyUI's input)")
    parser.add_argument("--output-dir", help="folder that the save nodes write into (default: ComfyUI's output)")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU")
    parser.add_argument("--comfy-args", default="", metavar='"OPTIONS"',
                        help='ComfyUI\'s own command-line options, e.g. --comfy-args "--lowvram --fp16-vae"')
    parser.add_argument("--lenient", action="store_true",
                        help="leave out widget values that a node does not have (with a note) instead of refusing "
                             "the workflow, e.g. values of widgets that a frontend extension adds")
    parser.add_argument("--verbose", action="store_true", help="print Python tracebacks of failing nodes")
    parser.add_argument("--batch-input", metavar="NODE.INPUT=FOLDER",
                        help="run the workflow once per file of FOLDER (sorted), the file going into that input "
                             "(e.g. LoadImage.image=photos/); outputs in OUTPUT_DIR/<file name>/, a manifest.jsonl, "
                             "items done in an earlier run (per the manifest) are skipped")
    parser.add_argument("--sweep", action="append", metavar="NODE.INPUT=V1,V2,...",
                        help="run the workflow once per combination of these values (repeatable: a grid, e.g. "
                             "--sweep \"Cut Step Scheduler.cut_step=13,17,21\" --sweep \"UNet Feature Cache.interval="
                             "1,2,3\"); OUTPUT_DIR/sweep.csv and sweep.md tabulate each combination's seconds, MACs "
                             "ratio and Video Compare numbers against the workflow's own reference")
    parser.add_argument("--server", action="append", metavar="URL",
                        help="run on this ComfyUI server (e.g. http://127.0.0.1:8188) instead of in this process; "
                             "repeatable: one job at a time per server, a failed server's job goes to another")
    parser.add_argument("--manifest", help="the batch's JSON-lines manifest (default: OUTPUT_DIR/manifest.jsonl)")
    deadlines = parser.add_argument_group("--server deadlines (seconds)")
    deadlines.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                           help="to open a connection to a server (default 10)")
    deadlines.add_argument("--read-timeout", type=float, default=60.0, metavar="S",
                           help="any wait for data from a server (default 60)")
    deadlines.add_argument("--request-timeout", type=float, default=120.0, metavar="S",
                           help="a whole control request: /system_stats, /object_info, upload, /prompt, /history "
                                "(default 120)")
    deadlines.add_argument("--download-timeout", type=float, default=600.0, metavar="S",
                           help="one output file's download (default 600)")
    deadlines.add_argument("--progress-timeout", type=float, default=600.0, metavar="S",
                           help="a job with no message from its server for this long (queued behind other jobs, or "
                                "a node that never reports) drops the server; the job is cancelled there and goes "
                                "to another server (default 600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    try:
        return run(options)
    except RunnerError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        return error.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # an unexpected failure: show it in full
        traceback.print_exc()
        return 1
