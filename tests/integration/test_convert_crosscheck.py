"""The runner's UI -> API converter (runner/convert.py) cross-checked with comfy-cli's independent one
(`comfy_cli.workflow_to_api.convert_ui_to_api`, a port of another project's converter) on every shipped workflow,
both against the running ComfyUI's node definitions: /object_info of a real server of this release (the pack loaded
by ComfyUI's own loader), dumped to a JSON file. comfy-cli runs in the pack's .venv (a pinned dev requirement,
scripts/bootstrap.sh), so ComfyUI's environment is left as it is.

Ours converts twice: with the in-process node classes (what run_workflow.py uses in this process) and with the
server's /object_info (what `--server` uses); the two must give the same prompt, and that prompt must equal
comfy-cli's except for the differences listed in KNOWN_DIFFERENCES, each a case where ours follows the frontend
(docs/runner.md, "How a workflow becomes a prompt")."""
import json
import subprocess
import urllib.request

import harness
import pytest
from comfy_servers import ComfyServer

WORKFLOWS = sorted((harness.PACK_ROOT / "workflows").glob("*.json"))
PACK_PYTHON = harness.PACK_ROOT / ".venv" / "bin" / "python"

# comfy-cli's converter on (object_info file, output file, workflow files...): {workflow name: prompt | error}
COMFY_CLI = """
import json, logging, pathlib, sys
from comfy_cli.workflow_to_api import convert_ui_to_api
logged = []
handler = logging.Handler()
handler.emit = lambda record: logged.append(record.getMessage())
logging.getLogger("comfy_cli").addHandler(handler)
object_info = json.loads(pathlib.Path(sys.argv[1]).read_text())
out = {}
for path in sys.argv[3:]:
    logged.clear()
    try:
        out[pathlib.Path(path).name] = {"prompt": convert_ui_to_api(json.loads(pathlib.Path(path).read_text()),
                                                                    object_info), "log": list(logged)}
    except Exception as error:
        out[pathlib.Path(path).name] = {"error": f"{type(error).__name__}: {error}", "log": list(logged)}
pathlib.Path(sys.argv[2]).write_text(json.dumps(out))
"""

# Where the two converters differ: (workflow, node id, input) -> why ours is right.
KNOWN_DIFFERENCES = {
    ("frontend rules", "4", "dilate"): (
        "a widget turned into an input and linked to a PrimitiveNode takes the PrimitiveNode's value (7): the "
        "frontend's PrimitiveNode.applyToGraph writes it into the target widget before graphToPrompt; comfy-cli "
        "keeps the value saved in the target's own widgets_values (0), which the frontend would have overwritten"),
}


@pytest.fixture(scope="module")
def object_info(tmp_path_factory):
    """/object_info of a real ComfyUI server of this release, as a JSON file."""
    root = tmp_path_factory.mktemp("crosscheck")
    server = ComfyServer(root / "server")
    try:
        server.wait_ready()
        with urllib.request.urlopen(server.url + "/object_info", timeout=120) as response:
            data = response.read()
    finally:
        server.stop()
    path = root / "object_info.json"
    path.write_bytes(data)
    return path


def test_comfy_cli_has_the_converter():
    """The premise: the pinned comfy-cli in the pack's .venv has comfy_cli.workflow_to_api.convert_ui_to_api."""
    assert PACK_PYTHON.is_file(), f"{PACK_PYTHON} is missing: scripts/bootstrap.sh creates it"
    result = subprocess.run([str(PACK_PYTHON), "-c", "from comfy_cli.workflow_to_api import convert_ui_to_api; "
                             "import importlib.metadata as m; print(m.version('comfy-cli'))"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_shipped_workflow_converts_as_comfy_cli_converts_it(object_info, comfy_nodes, tmp_path):
    from vcut.runner.convert import ui_to_api
    from vcut.runner.remote import RemoteNode
    assert len(WORKFLOWS) >= 13
    rules = tmp_path / "frontend rules"
    rules.write_text(json.dumps(harness.frontend_rules_workflow()))
    out = tmp_path / "comfy_cli.json"
    result = subprocess.run([str(PACK_PYTHON), "-c", COMFY_CLI, str(object_info), str(out), *map(str, WORKFLOWS),
                             str(rules)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    theirs = json.loads(out.read_text())
    definitions = json.loads(object_info.read_text())
    remote = {name: RemoteNode(info) for name, info in definitions.items()}
    display = {name: info.get("display_name") or name for name, info in definitions.items()}
    pack = {name for name in comfy_nodes.NODE_CLASS_MAPPINGS if name.startswith("VCUT") and "Test" not in name}
    assert pack and pack <= set(definitions)  # the server loaded the pack, as this process did
    differences = {}
    for path in [*WORKFLOWS, rules]:
        workflow = json.loads(path.read_text())
        ours = ui_to_api(workflow, comfy_nodes.NODE_CLASS_MAPPINGS, comfy_nodes.NODE_DISPLAY_NAME_MAPPINGS)
        assert ui_to_api(workflow, remote, display) == ours, path.name  # in process and --server agree
        other = theirs[path.name]
        assert "error" not in other and other["log"] == [], (path.name, other)  # it converted every node
        for node, fields in describe(ours, other["prompt"]).items():
            for name, pair in fields.items():
                differences[(path.stem, node, name)] = pair
    unexplained = {key: pair for key, pair in differences.items() if key not in KNOWN_DIFFERENCES}
    assert unexplained == {}, "\n".join(f"{key}: ours {a!r}, comfy-cli {b!r}" for key, (a, b) in unexplained.items())
    assert set(differences) == set(KNOWN_DIFFERENCES), "a listed difference is gone: remove it from the list"
    assert differences[("frontend rules", "4", "dilate")] == [7, 0]


def describe(ours: dict, theirs: dict) -> dict:
    """Per node, the fields where the two prompts differ: {node: {field: [ours, theirs]}} (field "node" for a node
    only one of them has)."""
    out = {}
    for key in sorted(set(ours) | set(theirs), key=str):
        a, b = ours.get(key), theirs.get(key)
        if a == b:
            continue
        if a is None or b is None:
            out[key] = {"node": [a, b]}
            continue
        fields = {}
        for name in sorted(set(a["inputs"]) | set(b["inputs"])):
            if a["inputs"].get(name, "<absent>") != b["inputs"].get(name, "<absent>"):
                fields[name] = [a["inputs"].get(name, "<absent>"), b["inputs"].get(name, "<absent>")]
        for name in ("class_type", "_meta"):
            if a.get(name) != b.get(name):
                fields[name] = [a.get(name), b.get(name)]
        out[key] = fields
    return out
