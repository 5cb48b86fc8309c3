"""Test-only custom node pack for the ComfyUI servers the tests and the runner benchmark start (comfy_servers.py):
VCUTTestCheckpoint, the tiny random-weight SVD + CLIP vision + VAE of harness.py in place of ImageOnlyCheckpointLoader
(no weights exist on the test machines). Loaded by ComfyUI's own custom-node loader inside the server."""
import pathlib
import sys

import nodes  # ComfyUI's, already imported by the server that loads this pack

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import harness  # noqa: E402  (after the sys.path setup above)

harness.use_running_comfyui(nodes)
NODE_CLASS_MAPPINGS = {"VCUTTestCheckpoint": harness.TinyCheckpointLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"VCUTTestCheckpoint": "Tiny test checkpoint (vcut tests)"}
