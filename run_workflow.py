"""Run a ComfyUI workflow without the browser:

    python custom_nodes/vcut/run_workflow.py WORKFLOW.json [--comfyui PATH] [--set NODE.INPUT=VALUE ...]
        [--input-dir D] [--output-dir D] [--cpu] [--verbose]
        [--batch-input NODE.INPUT=FOLDER] [--server URL ...] [--manifest FILE]
        [--connect-timeout S] [--read-timeout S] [--request-timeout S] [--download-timeout S] [--progress-timeout S]

Progress goes to stderr, the paths of the written files to stdout; the exit status is 0 on success,
1 when a node fails, 2 for a bad command line / workflow, 3 when ComfyUI's validation rejects the prompt.
--batch-input runs the workflow once per file of a folder (runner/batch.py, runner/local.py; exit status 1 when an
item failed);
--server runs it on ComfyUI servers through their HTTP / WebSocket API instead of in this process (runner/remote.py),
every exchange under the deadlines of the *-timeout flags.
Not imported by ComfyUI (the pack's entry point is __init__.py)."""
import importlib.util
import pathlib
import sys


def _load_runner():
    """The pack's runner package under a private name, so nothing on ComfyUI's path can shadow it."""
    root = pathlib.Path(__file__).resolve().parent / "runner"
    spec = importlib.util.spec_from_file_location("vcut_runner", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["vcut_runner"] = module
    spec.loader.exec_module(module)
    return importlib.import_module("vcut_runner.cli")


if __name__ == "__main__":
    sys.exit(_load_runner().main())
