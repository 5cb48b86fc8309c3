"""Small stub servers on 127.0.0.1 that speak ComfyUI's HTTP / WebSocket API badly, for the runner's hostile-server
tests: aiohttp (ComfyUI's own requirement) in a thread of the test, stopped by the test (a context manager), every
handler bounded in time. A stub answers what the runner asks of a ComfyUI server (/system_stats, /object_info,
/upload/image, /ws, /prompt, /history/<id>, /view, /api/jobs/<id>/cancel) and records what it was sent."""
from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid

from aiohttp import web

# One node type: an API prompt {"1": {"class_type": "StubSave", "inputs": {...}}} converts against it.
OBJECT_INFO = {"StubSave": {"display_name": "Stub Save", "input": {
    "required": {"image": ["STRING", {}], "images": ["IMAGE", {}], "filename_prefix": ["STRING", {}]}}}}
STATS = {"system": {"comfyui_version": "stub", "os": "posix"}, "devices": []}
LONGEST = 120  # seconds any handler waits at most (the runner's deadlines are far shorter)


class Stub:
    """A stub server. `mode` picks its behaviour:
    - "silent": accepts connections, never answers /system_stats;
    - "trickle": answers /system_stats with one byte a second, never ending;
    - "stuck": a ComfyUI that accepts a prompt and never runs it (no message, /history stays empty);
    - "history": runs each prompt at once; /history of the n-th prompt names the files outputs[n]."""

    def __init__(self, mode: str, outputs: list[list[dict]] | None = None):
        self.mode, self.outputs = mode, outputs or [[]]
        self.prompts: list[str] = []  # prompt ids in the order received
        self.uploads: list[str] = []  # file names of the uploads
        self.cancelled: list[str] = []  # prompt ids cancelled through /api/jobs/<id>/cancel
        self.views: list[dict] = []  # query of each /view
        self.url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/system_stats", self.system_stats)
        app.router.add_get("/object_info", self.object_info)
        app.router.add_post("/upload/image", self.upload)
        app.router.add_get("/ws", self.websocket)
        app.router.add_post("/prompt", self.prompt)
        app.router.add_get("/history/{prompt_id}", self.history)
        app.router.add_get("/view", self.view)
        app.router.add_post("/api/jobs/{prompt_id}/cancel", self.cancel)
        return app

    async def system_stats(self, request):
        if self.mode == "silent":
            await asyncio.sleep(LONGEST)
        if self.mode == "trickle":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for _ in range(LONGEST):
                await response.write(b" ")
                await asyncio.sleep(1)
            return response
        return web.json_response(STATS)

    async def object_info(self, request):
        return web.json_response(OBJECT_INFO)

    async def upload(self, request):
        form = await request.post()
        self.uploads.append(form["image"].filename)
        return web.json_response({"name": form["image"].filename, "subfolder": form.get("subfolder", ""),
                                  "type": "input"})

    async def websocket(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ws.receive(), LONGEST)  # silent: no status, no progress
        return ws

    async def prompt(self, request):
        data = await request.json()
        prompt_id = data.get("prompt_id") or str(uuid.uuid4())
        self.prompts.append(prompt_id)
        return web.json_response({"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}})

    async def history(self, request):
        prompt_id = request.match_info["prompt_id"]
        if self.mode == "stuck" or prompt_id not in self.prompts:
            return web.json_response({})
        files = self.outputs[self.prompts.index(prompt_id) % len(self.outputs)]
        return web.json_response({prompt_id: {
            "outputs": {"1": {"images": files}},
            "status": {"status_str": "success", "completed": True, "messages": []}}})

    async def view(self, request):
        self.views.append(dict(request.query))
        return web.Response(body=b"stub output")

    async def cancel(self, request):
        self.cancelled.append(request.match_info["prompt_id"])
        return web.json_response({"cancelled": True})


@contextlib.contextmanager
def stub_server(stub: Stub):
    """Serve `stub` on 127.0.0.1 (a free port) in a thread; yields it with .url set; stopped at exit."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    runner = web.AppRunner(stub.app(), shutdown_timeout=1.0, handler_cancellation=True)

    def serve():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        stub.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30), "the stub server did not start"
    try:
        yield stub
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
