"""Run a ComfyUI workflow JSON without the browser: ComfyUI started in-process as main.py starts it (its nodes, its
custom nodes, this pack), the workflow converted to an API prompt, command-line overrides applied, ComfyUI's own
validation and PromptExecutor, progress on stderr, the written files on stdout.

ComfyUI is imported only inside the functions here (the pack must not import it at module level)."""
from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import json
import logging
import os
import pathlib
import shlex
import shutil
import sys
import tempfile
import time
import traceback
import uuid

from .convert import WorkflowError, find_cycle, input_specs, is_api_prompt, takes_value, ui_to_api

PACK_ROOT = pathlib.Path(__file__).resolve().parents[1]
TEMP = "vcut-run-temp-"  # the run's temporary folder (previews): vcut-run-temp-<pid>-<id> in the system's temp


class RunnerError(Exception):
    """A user-facing failure: printed without a traceback, exit status `code`."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def log(message: str) -> None:
    print(f"[vcut-run] {message}", file=sys.stderr, flush=True)


def find_comfyui(explicit: str | None) -> pathlib.Path:
    """--comfyui, else $COMFYUI_PATH, else the ComfyUI this pack sits in (ComfyUI/custom_nodes/<pack>)."""
    candidates = [explicit] if explicit else [os.environ.get("COMFYUI_PATH"), str(PACK_ROOT.parent.parent)]
    for candidate in candidates:
        if candidate and (pathlib.Path(candidate) / "comfy").is_dir() and \
                (pathlib.Path(candidate) / "execution.py").is_file():
            return pathlib.Path(candidate).resolve()
    where = explicit or f"$COMFYUI_PATH or {PACK_ROOT.parent.parent}"
    raise RunnerError(f"no ComfyUI found at {where}: pass --comfyui PATH (the folder holding main.py)")


def start_comfyui(root: pathlib.Path, cpu: bool, comfy_args: str = ""):
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
    setup_logging(args)
    try:  # newer ComfyUI (app/governance.py, after 0.8.0): main.py applies the organisation's policy first
        from app import governance
    except ImportError:  # ComfyUI 0.8.0
        governance = None
    if governance is not None and hasattr(governance, "initialize"):
        governance.initialize()
    import utils.extra_config  # as main.py: ComfyUI's utils package before comfy/utils.py
    load_extra_paths(root, args, utils.extra_config)
    apply_folder_args(args)
    run_prestartup_scripts(args)
    import execution  # noqa: F401
    import nodes
    import server
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:  # custom nodes may register routes on PromptServer.instance at import: give them one, as main.py does
        new_prompt_server(server, loop, args)
    except Exception as error:  # the runner itself does not need the web server
        log(f"note: ComfyUI's PromptServer could not be created ({error}); continuing without it")
    try:  # as main.py: undo what custom nodes patch in ComfyUI's core functions while loading
        import hook_breaker_ac10a0 as hook_breaker
    except ImportError:  # older ComfyUI
        hook_breaker = None
    if hook_breaker:
        hook_breaker.save_functions()
    # Partner (paid API) nodes: ComfyUI 0.8.0 skips them with --disable-api-nodes; newer ones (0.38.1) with
    # --disable-partner-nodes, which --disable-api-nodes (now an alias of --offline) also sets.
    partner_off = getattr(args, "disable_partner_nodes", None)
    loop.run_until_complete(nodes.init_extra_nodes(
        init_custom_nodes=not args.disable_all_custom_nodes or len(args.whitelist_custom_nodes) > 0,
        init_api_nodes=not (args.disable_api_nodes if partner_off is None else partner_off)))
    if hook_breaker:
        hook_breaker.restore_functions()
    loaded = {pathlib.Path(p).resolve() for p in nodes.LOADED_MODULE_DIRS.values()}
    # The pack lives outside this ComfyUI's custom_nodes: load it explicitly, with ComfyUI's loader.
    if PACK_ROOT not in loaded and not loop.run_until_complete(nodes.load_custom_node(str(PACK_ROOT))):
        raise RunnerError(f"ComfyUI could not load the vcut pack from {PACK_ROOT} (see the log above)", 1)
    return nodes


def setup_logging(args) -> None:
    """ComfyUI's logging set-up, as main.py: INFO lines (the pack's own among them) on stderr."""
    import comfy.cli_args
    try:
        from app.logger import setup_logger
    except ImportError:  # older ComfyUI
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        return
    kwargs = {}
    if hasattr(comfy.cli_args, "get_console_log_level"):
        # newer ComfyUI (0.38.1): --verbose is a list of (LEVEL, FILE or None) read through get_console_log_level
        level = comfy.cli_args.get_console_log_level(args.verbose)
        if hasattr(comfy.cli_args, "get_file_log_outputs") and \
                "file_outputs" in inspect.signature(setup_logger).parameters:
            kwargs["file_outputs"] = comfy.cli_args.get_file_log_outputs(args.verbose)
    else:  # ComfyUI 0.8.0: --verbose is one level name
        level = args.verbose
    setup_logger(log_level=level, use_stdout=False, **kwargs)


def load_extra_paths(root: pathlib.Path, args, extra_config) -> None:
    """Extra model folders, as main.py reads them."""
    extra_paths = root / "extra_paths.yaml"  # newer ComfyUI (0.38.1): primary config, extra_model_paths.yaml's superset
    legacy = root / "extra_model_paths.yaml"
    if extra_paths.is_file():
        if "allow_system_dirs" in inspect.signature(extra_config.load_extra_path_config).parameters:
            extra_config.load_extra_path_config(str(extra_paths), allow_system_dirs=True)
        else:
            extra_config.load_extra_path_config(str(extra_paths))
    elif legacy.is_file():
        extra_config.load_extra_path_config(str(legacy))
    for config in itertools.chain(*(args.extra_model_paths_config or [])):
        extra_config.load_extra_path_config(config)


def apply_folder_args(args) -> None:
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


def new_prompt_server(server_module, loop, args):
    """server.PromptServer as main.py creates it. ComfyUI 0.8.0: PromptServer(loop); newer ones (0.38.1):
    PromptServer(loop, asset_manager), where a headless run takes app.assets.manager.NoAssets (assets off)."""
    parameters = inspect.signature(server_module.PromptServer.__init__).parameters
    if "asset_manager" in parameters:
        from app.assets.manager import NoAssets
        return server_module.PromptServer(loop, NoAssets(args))
    return server_module.PromptServer(loop)


def new_executor(execution, server, cache_type):
    """execution.PromptExecutor with no node cache kept between runs. ComfyUI 0.8.0 reads cache_args["lru"] and
    ["ram"]; newer ones (0.38.1's execute_async) also read cache_args["ram_inactive"] (a KeyError without it), and
    older ones ignore keys they do not read."""
    return execution.PromptExecutor(server, cache_type=cache_type,
                                    cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})


def run_prestartup_scripts(args) -> None:
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


def parse_override(text: str):
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


def coerce(spec, value, raw):
    """A STRING input, or a COMBO whose choices are text, takes the text as typed (so '8' stays the string '8')."""
    typ = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    opts = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict) else {}
    choices = typ if isinstance(typ, (list, tuple)) else opts.get("options") if typ == "COMBO" else None
    if (typ == "STRING" and not isinstance(value, str)) or (choices is not None and value not in choices
                                                             and raw in choices):
        return raw
    return value


def _matching_nodes(prompt: dict, node: str) -> list[str]:
    """The node with this id, else every node titled so and every node of that type (whatever its title)."""
    if node in prompt:
        return [node]
    return [k for k, v in prompt.items() if v.get("_meta", {}).get("title") == node or v["class_type"] == node]


def apply_overrides(prompt: dict, overrides: list[str], node_classes) -> list[str]:
    """Set inputs by node id, title or class type (every matching node); returns what was set, for the log.
    An input of a DynamicCombo's option is named with its dots, e.g. --set SaveVideo.format.codec=h264."""
    done = []
    for text in overrides:
        node, name, parsed, raw = parse_override(text)
        targets = _matching_nodes(prompt, node)
        key = f"{node}.{name}"
        for cut in [i for i, c in enumerate(key) if c == "."][-2::-1]:  # NODE.a.b: node "NODE", input "a.b"
            if targets:
                break
            node, name = key[:cut], key[cut + 1:]
            targets = _matching_nodes(prompt, node)
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


def _id_key(key: str):
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


class HeadlessServer:
    """What PromptExecutor needs of ComfyUI's server; its messages become progress lines on stderr."""

    def __init__(self, prompt: dict):
        self.client_id = "vcut-runner"
        self.last_node_id = None
        self.last_prompt_id = None
        self.sockets_metadata = {}
        self.prompt = prompt
        self.errors = []
        self.started = {}

    def describe(self, node_id) -> str:
        entry = self.prompt.get(str(node_id), {})
        title = entry.get("_meta", {}).get("title")
        kind = entry.get("class_type", "?")
        return f"node {node_id} ({kind}{'' if not title or title == kind else ', ' + repr(title)})"

    def send_sync(self, event, data, sid=None):
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

    def hook(value, total, preview_image, prompt_id=None, node_id=None):
        context = get_executing_context()
        if node_id is None:
            node_id = context.node_id if context is not None else server.last_node_id
        try:
            get_progress_state().update_progress(node_id, value, total, None)
        except Exception:  # the progress registry is for the web UI; a failure there must not stop the run
            pass
        server.send_sync("progress", {"value": value, "max": total, "node": node_id})

    comfy.utils.set_progress_bar_global_hook(hook)


def written_files(history: dict, output_dir: str) -> list[tuple[str, pathlib.Path]]:
    """(node id, path) of every file the output nodes report as written to the output folder."""
    found = []

    def walk(node_id, value):
        if isinstance(value, dict):
            if "filename" in value and value.get("type", "output") == "output":
                found.append((node_id, pathlib.Path(output_dir) / value.get("subfolder", "") / value["filename"]))
                return
            for item in value.values():
                walk(node_id, item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(node_id, item)

    for node_id, ui in (history.get("outputs") or {}).items():
        walk(node_id, ui)
    return found


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


def run(options) -> int:
    workflow = load_workflow(options.workflow)
    if options.output_dir:  # checked before ComfyUI starts or a server is asked
        output_folder(options.output_dir)
    if options.server:  # ComfyUI servers run the workflow: no ComfyUI in this process (remote.py)
        from .remote import run_on_servers
        return run_on_servers(options, workflow)
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
    from .batch import clean_stale, owned_name
    clean_stale(pathlib.Path(tempfile.gettempdir()), TEMP)  # temp folders of killed runs
    temp_dir = pathlib.Path(tempfile.gettempdir()) / owned_name(TEMP)  # previews go here, removed at the end
    temp_dir.mkdir(mode=0o700)
    folder_paths.set_temp_directory(str(temp_dir))
    try:
        if options.batch_input:  # the workflow once per file of a folder (batch.py)
            from .batch import run_in_process
            prompt = prepare_prompt(options, workflow, nodes.NODE_CLASS_MAPPINGS, nodes.NODE_DISPLAY_NAME_MAPPINGS)
            return run_in_process(options, prompt, nodes, execution, output_dir)
        return execute(options, workflow, nodes, execution, output_dir)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def prepare_prompt(options, workflow, node_classes, display_names=None) -> dict:
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


def execute(options, workflow, nodes, execution, output_dir) -> int:
    """Convert, override, validate and execute; print the written files."""
    prompt = prepare_prompt(options, workflow, nodes.NODE_CLASS_MAPPINGS, nodes.NODE_DISPLAY_NAME_MAPPINGS)
    prompt_id = str(uuid.uuid4())
    valid = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
    if not valid[0]:
        raise RunnerError(format_validation(valid[1] or {}, valid[3] or {}, prompt), 3)
    server = HeadlessServer(prompt)
    server.last_prompt_id = prompt_id
    hook_progress(server)
    executor = new_executor(execution, server, execution.CacheType.CLASSIC)
    start = time.perf_counter()
    log(f"executing {len(prompt)} nodes, outputs: {', '.join(valid[2])}")
    executor.execute(prompt, prompt_id, {"client_id": server.client_id}, valid[2])
    if not executor.success:
        lines = ["execution failed:"]
        for data in server.errors or [d for e, d in executor.status_messages if e == "execution_error"]:
            lines.append(f"  {server.describe(data.get('node_id'))}: {data.get('exception_type', '')}: "
                         f"{data.get('exception_message', '').strip()}")
            if options.verbose and data.get("traceback"):
                lines.append("".join(data["traceback"]))
        raise RunnerError("\n".join(lines), 1)
    log(f"finished in {time.perf_counter() - start:.2f} s")
    files = written_files(executor.history_result, str(output_dir))
    for node_id, ui in (executor.history_result.get("outputs") or {}).items():
        for text in ui.get("text", []) if isinstance(ui, dict) else []:
            log(f"{server.describe(node_id)} says: {text}")
    for _node_id, path in files:
        print(path, flush=True)
    if not files:
        log("no files were written (the workflow has no save nodes)")
    return 0


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


def main(argv=None) -> int:
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
