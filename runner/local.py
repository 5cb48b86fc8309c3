"""The runner in this process: ComfyUI started as main.py starts it (its nodes, its custom nodes, this pack), then
ComfyUI's own validation and PromptExecutor, progress on stderr, the written files on stdout; a folder batch runs
every item through one PromptExecutor (models stay loaded between items, as in a server), each item's files moved
into OUT/<item>/. ComfyUI is imported only inside the functions here (the pack must not import it at module
level)."""
from __future__ import annotations

import asyncio
import os
import pathlib
import shlex
import shutil
import signal
import sys
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

from .batch import Result, item_line, place, plan, summary, with_input
from .common import (
    Lease,
    RunnerError,
    clean_stale,
    describe_node,
    execution_errors,
    format_validation,
    log,
    output_folder,
    prepare_prompt,
    written_files,
)

if TYPE_CHECKING:
    import argparse
    import types

    from .batch import Batch, Item

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
TEMP = "vcut-run-temp-"  # the run's temporary folder (previews): vcut-run-temp-<run> in the system's temp
COMPAT = "vcut_comfy_compat"  # the private module name of nodes/comfy_compat.py in the runner (comfy_compat())
STAGING = ".vcut-batch-"  # the in-process batch's staging folders, output and input: .vcut-batch-<run>
# each holds the run's lease file (common.Lease): another run removes it only once that lease is stale


def find_comfyui(explicit: str | None) -> pathlib.Path:
    """--comfyui, else $COMFYUI_PATH, else the ComfyUI this pack sits in (ComfyUI/custom_nodes/<pack>)."""
    candidates = [explicit] if explicit else [os.environ.get("COMFYUI_PATH"), str(PACK_ROOT.parent.parent)]
    for candidate in candidates:
        if candidate and (pathlib.Path(candidate) / "comfy").is_dir() and \
                (pathlib.Path(candidate) / "execution.py").is_file():
            return pathlib.Path(candidate).resolve()
    where = explicit or f"$COMFYUI_PATH or {PACK_ROOT.parent.parent}"
    raise RunnerError(f"no ComfyUI found at {where}: pass --comfyui PATH (the folder holding main.py)")


def start_comfyui(root: pathlib.Path, cpu: bool, comfy_args: str = "") -> types.ModuleType:
    """Import ComfyUI from `root` and load its nodes and custom nodes like main.py; returns ComfyUI's `nodes`.
    comfy_args: ComfyUI's own command-line options (e.g. "--lowvram --fp16-vae"), parsed by ComfyUI's parser.
    Works with ComfyUI 0.8.0 (run by the tests) and with the interfaces of newer ones (checked against 0.38.1's
    sources): each difference is handled where it is, by what the running ComfyUI has."""
    sys.path.insert(0, str(root))
    import comfy.options
    if comfy_args:
        sys.argv = [str(root / "main.py"), *shlex.split(comfy_args)]
        comfy.options.enable_args_parsing()
    from comfy.cli_args import args
    args.cpu = args.cpu or cpu
    compat = comfy_compat()
    compat.setup_logging(args)  # as main.py: INFO lines (the pack's own among them) on stderr
    compat.governance_initialize()  # main.py applies the organisation's policy first (where ComfyUI has one)
    import utils.extra_config  # as main.py: ComfyUI's utils package before comfy/utils.py
    compat.load_extra_paths(root, args, utils.extra_config)
    apply_folder_args(args)
    run_prestartup_scripts(args)
    import execution  # noqa: F401  (imported before nodes, as main.py does)
    import nodes
    import server
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:  # custom nodes may register routes on PromptServer.instance at import: give them one, as main.py does
        compat.new_prompt_server(server, loop, args)
    except Exception as error:  # the runner itself does not need the web server
        log(f"note: ComfyUI's PromptServer could not be created ({error}); continuing without it")
    hook_breaker = compat.hook_breaker()  # as main.py: undo what custom nodes patch in ComfyUI's core functions
    if hook_breaker:
        hook_breaker.save_functions()
    loop.run_until_complete(nodes.init_extra_nodes(
        init_custom_nodes=not args.disable_all_custom_nodes or len(args.whitelist_custom_nodes) > 0,
        init_api_nodes=not compat.partner_nodes_off(args)))
    if hook_breaker:
        hook_breaker.restore_functions()
    loaded = {pathlib.Path(p).resolve() for p in nodes.LOADED_MODULE_DIRS.values()}
    # The pack lives outside this ComfyUI's custom_nodes: load it explicitly, with ComfyUI's loader.
    if PACK_ROOT not in loaded and not loop.run_until_complete(nodes.load_custom_node(str(PACK_ROOT))):
        raise RunnerError(f"ComfyUI could not load the vcut pack from {PACK_ROOT} (see the log above)", 1)
    return nodes


def comfy_compat() -> types.ModuleType:
    """The pack's nodes/comfy_compat.py, the one home of the differences between ComfyUI releases, loaded by its path
    under a private name: the runner is not imported as part of the pack's package, and nodes/ is imported only by
    ComfyUI's loader, after ComfyUI has started."""
    module = sys.modules.get(COMPAT)
    if module is None:
        import importlib.util
        spec = importlib.util.spec_from_file_location(COMPAT, PACK_ROOT / "nodes" / "comfy_compat.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[COMPAT] = module
    return module


def apply_folder_args(args: argparse.Namespace) -> None:
    """ComfyUI's --output-directory / --input-directory / --user-directory, applied as main.py does (folder_paths
    reads --base-directory itself; temporary files go to the runner's own temporary folder), so that `--comfy-args`
    can keep every folder ComfyUI writes outside a read-only ComfyUI checkout."""
    import folder_paths
    if getattr(args, "output_directory", None):
        folder_paths.set_output_directory(os.path.abspath(args.output_directory))
    if getattr(args, "input_directory", None):
        folder_paths.set_input_directory(os.path.abspath(args.input_directory))
    if getattr(args, "user_directory", None):
        folder_paths.set_user_directory(os.path.abspath(args.user_directory))


def run_prestartup_scripts(args: argparse.Namespace) -> None:
    """Custom node packs' prestartup_script.py, run before ComfyUI's nodes are imported, as main.py runs them."""
    if args.disable_all_custom_nodes and not args.whitelist_custom_nodes:
        return
    import importlib.util

    import folder_paths
    for folder in folder_paths.get_folder_paths("custom_nodes"):
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            script = pathlib.Path(folder) / name / "prestartup_script.py"
            if name.endswith(".disabled") or not script.is_file():
                continue
            if args.disable_all_custom_nodes and name not in args.whitelist_custom_nodes:
                continue
            try:
                spec = importlib.util.spec_from_file_location(str(script.with_suffix("")), script)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except Exception as error:  # as main.py: a failing prestartup script is reported, not fatal
                log(f"prestartup script {script} failed: {error}")


class HeadlessServer:
    """What PromptExecutor needs of ComfyUI's server; its messages become progress lines on stderr."""

    def __init__(self, prompt: dict) -> None:
        self.client_id = "vcut-runner"
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.prompt = prompt
        self.errors = []
        self.started = {}
        self.reports = None  # sweep.ReportTap of a --sweep run: the pack's report lines, with their node

    def executing(self) -> str | None:
        """The node running now (ComfyUI's executing context where it has one, else the last "executing")."""
        node_id = comfy_compat().executing_node_id()
        return node_id if node_id is not None else self.last_node_id

    def describe(self, node_id: str | None) -> str:
        return describe_node(self.prompt, node_id)

    def send_sync(self, event: str, data: object, sid: str | None = None) -> None:
        if not isinstance(data, dict):
            return
        if event == "executing" and data.get("node") is not None:
            self.last_node_id = data["node"]
            self.started[data["node"]] = time.perf_counter()
            log(f"running {self.describe(data['node'])}")
        elif event == "executed":
            node = data.get("node")
            spent = time.perf_counter() - self.started.get(node, time.perf_counter())
            log(f"done    {self.describe(node)} in {spent:.2f} s")
        elif event == "execution_cached" and data.get("nodes"):
            log(f"cached  nodes {', '.join(map(str, data['nodes']))}")
        elif event == "progress":
            log(f"  {self.describe(data.get('node'))} step {data.get('value')}/{data.get('max')}")
        elif event == "execution_error":
            self.errors.append(data)


def hook_progress(server: HeadlessServer) -> None:
    """comfy.utils.ProgressBar updates -> progress lines (as main.py's hijack_progress, without the web socket)."""
    import comfy.utils
    from comfy_execution.progress import get_progress_state
    from comfy_execution.utils import get_executing_context

    def hook(value: int, total: int, preview_image: Any, prompt_id: str | None = None,
             node_id: str | None = None) -> None:
        context = get_executing_context()
        if node_id is None:
            node_id = context.node_id if context is not None else server.last_node_id
        try:
            get_progress_state().update_progress(node_id, value, total, None)
        except Exception:  # the progress registry is for the web UI; a failure there must not stop the run
            pass
        server.send_sync("progress", {"value": value, "max": total, "node": node_id})

    comfy.utils.set_progress_bar_global_hook(hook)


class ExecutionFailed(Exception):
    """A prompt that ComfyUI refused (validation: exit status 3) or that failed in a node (exit status 1)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def execute_prompt(prompt: dict, execution: types.ModuleType, executor: Any, server: HeadlessServer,
                   verbose: bool = False) -> dict:
    """ComfyUI's validation and PromptExecutor on one prompt, the only execute path of the runner in this process
    (a single run and every batch item); returns the execution's history_result, else raises ExecutionFailed."""
    server.prompt, server.errors = prompt, []
    prompt_id = str(uuid.uuid4())
    server.last_prompt_id = prompt_id
    valid = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not valid[0]:
        raise ExecutionFailed(format_validation(valid[1] or {}, valid[3] or {}, prompt), 3)
    log(f"executing {len(prompt)} nodes, outputs: {', '.join(valid[2])}")
    executor.execute(prompt, prompt_id, {"client_id": server.client_id}, valid[2])
    if not executor.success:
        errors = server.errors or [d for e, d in executor.status_messages if e == "execution_error"]
        raise ExecutionFailed(execution_errors(errors, prompt, verbose) or "execution failed", 1)
    return executor.history_result


def execute(options: argparse.Namespace, prompt: dict, execution: types.ModuleType, output_dir: pathlib.Path) -> int:
    """One run: execute the prompt; print the written files."""
    server = HeadlessServer(prompt)
    hook_progress(server)
    executor = comfy_compat().new_prompt_executor(execution, server, execution.CacheType.CLASSIC)
    start = time.perf_counter()
    try:
        history = execute_prompt(prompt, execution, executor, server, options.verbose)
    except ExecutionFailed as failed:
        message = str(failed) if failed.code == 3 else "execution failed:\n" + "\n".join(
            "  " + line for line in str(failed).splitlines())
        raise RunnerError(message, failed.code) from None
    log(f"finished in {time.perf_counter() - start:.2f} s")
    files = written_files(history, str(output_dir))
    for node_id, ui in (history.get("outputs") or {}).items():
        for text in ui.get("text", []) if isinstance(ui, dict) else []:
            log(f"{server.describe(node_id)} says: {text}")
    for _node_id, path in files:
        print(path, flush=True)
    if not files:
        log("no files were written (the workflow has no save nodes)")
    return 0


def stop(signum: int, frame: types.FrameType | None) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def run_in_process(options: argparse.Namespace, prompt: dict, nodes: types.ModuleType, execution: types.ModuleType,
                   output_dir: pathlib.Path, lease: Lease) -> int:
    """The batch in this process: one PromptExecutor for every item (models stay loaded between items, as in a
    server); ComfyUI writes into a staging folder, and each item's files are then moved into OUT/<item>/. Each item
    is claimed first (batch.Batch.start), so runs sharing the output folder never run one item twice."""
    import folder_paths
    batch = plan(options, output_dir, prompt, nodes.NODE_CLASS_MAPPINGS, lease)
    total = len(batch.items)
    done = {r.item.index for r in batch.skipped}
    results = list(batch.skipped)
    for r in batch.skipped:
        log(item_line(r, total))
    input_dir = pathlib.Path(folder_paths.get_input_directory())
    for folder in (output_dir, input_dir):  # what killed batches left (their lease is stale)
        clean_stale(folder, STAGING, lease.lease_s)
    staging = lease.folder(output_dir, STAGING)
    inbox = lease.folder(input_dir, STAGING) if batch.input else None  # each item's file is put here while it runs
    folder_paths.set_output_directory(str(staging))
    server = HeadlessServer(prompt)
    hook_progress(server)
    executor = comfy_compat().new_prompt_executor(execution, server, execution.CacheType.CLASSIC)
    start = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, stop)  # a terminated batch still removes its staging folders
    if batch.sweep is not None:  # the reports each item's nodes make (sweep.py reads its numbers from them)
        from .sweep import ReportTap
        server.reports = ReportTap(server.executing).__enter__()
    try:
        for item in batch.items:
            if item.index in done:
                continue
            result = batch.start(item)
            if result is None:
                result = batch.commit(run_item(item, prompt, batch, inbox, staging, output_dir, execution, executor,
                                               server))
            results.append(result)
            log(item_line(result, total))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server.reports is not None:
            server.reports.__exit__()
        for folder in (staging, inbox):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
    if batch.sweep is not None:
        batch.sweep.write(results, output_dir)
    return summary(results, batch.manifest.path, time.perf_counter() - start)


def stage_input(item: Item, inbox: pathlib.Path) -> pathlib.Path:
    """The item's file inside ComfyUI's input folder under the name ComfyUI reads as it is (Item.input_name): a
    hard link, else a copy. Not a symbolic link: ComfyUI 0.30.0's folder_paths.get_annotated_filepath refuses a path
    whose real path leaves the input folder (0.8.0 followed links)."""
    staged = inbox / item.input_name
    staged.unlink(missing_ok=True)
    try:
        os.link(item.path, staged)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(item.path, staged)
    return staged


def run_item(item: Item, prompt: dict, batch: Batch, inbox: pathlib.Path | None, staging: pathlib.Path,
             output_dir: pathlib.Path, execution: types.ModuleType, executor: Any, server: HeadlessServer) -> Result:
    began = time.perf_counter()
    staged = None
    try:
        if batch.input:
            staged = stage_input(item, inbox)
        result = execute_item(item, prompt, batch, staged, staging, output_dir, execution, executor, server)
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


def execute_item(item: Item, prompt: dict, batch: Batch, staged: pathlib.Path | None, staging: pathlib.Path,
                 output_dir: pathlib.Path, execution: types.ModuleType, executor: Any,
                 server: HeadlessServer) -> Result:
    """Validate and execute one item's prompt (seconds: set by run_item); its files into OUT/<item>/. Every file
    ComfyUI reports must be there: one that is missing fails the item (never an "ok" with files lost)."""
    item_prompt = item.prompt or prompt  # a --sweep item: its grid point's values set
    if batch.input:
        item_prompt = with_input(prompt, batch.targets, batch.input.input, f"{staged.parent.name}/{staged.name}")
    staging.mkdir(parents=True, exist_ok=True)
    if server.reports is not None:
        server.reports.take()  # only this item's reports
    try:
        history = execute_prompt(item_prompt, execution, executor, server)
    except ExecutionFailed as failed:
        return Result(item, "failed", [], 0.0, str(failed))
    metrics = batch.sweep.measure(server.reports.take(), item_prompt) if batch.sweep is not None else None
    reported = [path for _, path in written_files(history, str(staging))]
    missing = [str(path) for path in reported if not path.is_file()]
    if missing:
        return Result(item, "failed", [], 0.0, f"{len(missing)} of the {len(reported)} file(s) ComfyUI reported "
                      f"writing are not in the staging folder {staging} (removed while the item ran?): "
                      + ", ".join(missing), reported=len(reported))
    batch.check(item)  # still this run's item: else its files are left for the run that took it over
    outputs = [str(place(path, output_dir / item.name, path.relative_to(staging))) for path in reported]
    return Result(item, "ok", outputs, reported=len(reported), metrics=metrics)


def run_local(options: argparse.Namespace, workflow: dict) -> int:
    """The workflow (or its folder batch) in this process."""
    root = find_comfyui(options.comfyui)
    log(f"ComfyUI at {root}")
    nodes = start_comfyui(root, options.cpu, options.comfy_args)
    log(f"ComfyUI started: {len(nodes.NODE_CLASS_MAPPINGS)} node types")
    import execution
    import folder_paths
    if options.input_dir:
        if not pathlib.Path(options.input_dir).is_dir():
            raise RunnerError(f"--input-dir {options.input_dir} is not a folder")
        folder_paths.set_input_directory(str(pathlib.Path(options.input_dir).resolve()))
    output_dir = output_folder(options.output_dir or folder_paths.get_output_directory())
    folder_paths.set_output_directory(str(output_dir))
    with Lease() as lease:  # owns the run's temporary and staging folders, and its batch items' claims
        clean_stale(pathlib.Path(tempfile.gettempdir()), TEMP)  # temp folders of killed runs
        temp_dir = lease.folder(pathlib.Path(tempfile.gettempdir()), TEMP, 0o700)  # previews, removed at the end
        folder_paths.set_temp_directory(str(temp_dir))
        try:
            prompt = prepare_prompt(options, workflow, nodes.NODE_CLASS_MAPPINGS, nodes.NODE_DISPLAY_NAME_MAPPINGS)
            if options.batch_input or options.sweep:  # once per file of a folder, or per --sweep combination
                return run_in_process(options, prompt, nodes, execution, output_dir, lease)
            return execute(options, prompt, execution, output_dir)
        finally:
            shutil.rmtree(temp_dir, ignore_errors=True)
