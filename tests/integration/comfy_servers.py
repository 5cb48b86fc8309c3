"""Real ComfyUI servers on loopback for the runner's --server tests and benchmark: `main.py --cpu --listen 127.0.0.1
--port P --base-directory BASE`, BASE/custom_nodes holding links to this checkout (ComfyUI's own loader loads the
pack) and to server_nodes/ (the tiny random-weight test checkpoint). Every server started here is stopped on exit."""
from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import harness

SERVER_NODES = pathlib.Path(__file__).resolve().parent / "server_nodes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def comfy_base(base: pathlib.Path) -> pathlib.Path:
    """A ComfyUI base directory with the pack and the test nodes in its custom_nodes."""
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    for name, target in (("vcut", harness.PACK_ROOT), ("vcut_test_nodes", SERVER_NODES)):
        if not (base / "custom_nodes" / name).exists():
            (base / "custom_nodes" / name).symlink_to(target, target_is_directory=True)
    return base


class ComfyServer:
    def __init__(self, base: pathlib.Path, python: str = sys.executable):
        self.base = comfy_base(base)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        command = [python, str(harness.comfy_path() / "main.py"), "--cpu", "--listen", "127.0.0.1",
                   "--port", str(self.port), "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
                   "--disable-auto-launch", "--disable-api-nodes"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=str(base), stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2) as response:
                    response.read()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{self.log()[-4000:]}") from None
                time.sleep(0.5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """Stop the server at once (SIGKILL: as a crashed machine, no goodbye on its sockets)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def comfy_servers(root: pathlib.Path, count: int):
    """`count` servers under root/server<i>, started together, ready, stopped at exit whatever happens."""
    servers = []
    try:
        for i in range(count):
            servers.append(ComfyServer(root / f"server{i}"))
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def progress_texts(url: str, prompt: dict, timeout: float = 300.0) -> list[tuple[str, str]]:
    """Queue `prompt` on the server at `url` and return the (node id, text) progress-text messages it sends to this
    client until the prompt finishes, as the browser receives them; an execution error fails the test."""
    import aiohttp  # ComfyUI's own dependency: only in ComfyUI's environment

    from vcut.runner.sweep import progress_text  # the runner's reader of the same messages

    async def run() -> list[tuple[str, str]]:
        client, texts = uuid.uuid4().hex, []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.ws_connect(f"{url.replace('http', 'ws')}/ws?clientId={client}") as ws:
                async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": client}) as response:
                    assert response.status == 200, await response.text()
                    prompt_id = (await response.json())["prompt_id"]
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.BINARY:
                        text = progress_text(message.data)
                        if text is not None:
                            texts.append(text)
                    elif message.type == aiohttp.WSMsgType.TEXT:
                        event = json.loads(message.data)
                        data = event.get("data", {})
                        assert event["type"] != "execution_error", data
                        if event["type"] == "executing" and data.get("node") is None and \
                                data.get("prompt_id") == prompt_id:
                            return texts
        raise AssertionError(f"the connection closed before the prompt finished: {texts}")

    return asyncio.run(asyncio.wait_for(run(), timeout))
