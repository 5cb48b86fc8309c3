"""The runner as a client of running ComfyUI servers (--server URL, repeatable): ComfyUI's own server executes the
workflow; this module only talks to its HTTP and WebSocket API, with aiohttp (one of ComfyUI's own requirements):

- GET  /system_stats, /object_info   is it ComfyUI; the node definitions for converting the workflow
- POST /upload/image                 the batch's input file, into <input>/vcut-batch-<id>/ on that server
- WS   /ws?clientId=...              progress and the end of our prompt
- POST /prompt, GET /history/<id>    submit the prompt; its status and the files it wrote
- GET  /view                         download each written file into OUT/<item>/

One job at a time per server (a server's queue never holds more than one of ours). A server that stops answering
(connection refused or reset, its WebSocket closed, a deadline passed) is dropped for the rest of the batch and its
job goes back to the front of the queue for another server; the dropped job is cancelled there (POST
/api/jobs/<id>/cancel where the server has it, ComfyUI 0.30.0 and newer; else POST /queue {"delete"} and
/interrupt, ComfyUI 0.8.0). A job that fails on a working server (validation, a node error) is that item's failure.

Deadlines (run_workflow.py flags): --connect-timeout for every connection; --read-timeout for any wait for data;
--request-timeout for the whole of a control request (/system_stats, /object_info, /upload, /prompt, /history,
the WebSocket handshake); --download-timeout for one /view download; --progress-timeout: a job with no message
from the server for that long drops the server. Nothing a server names is trusted: each output's subfolder and
file name must stay inside the item's output folder (common.inside), else the item fails and nothing is written.
Items, manifest, resume and summary are batch.py's."""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import pathlib
import time
import uuid
from typing import TYPE_CHECKING, Any

from .batch import Item, Result, item_line, plan, summary, with_input
from .common import (
    Lease,
    LeaseLost,
    RunnerError,
    execution_errors,
    format_validation,
    inside,
    log,
    move_new,
    output_entries,
    prepare_prompt,
)
from .sweep import progress_text

if TYPE_CHECKING:
    import argparse

    import aiohttp

    from .batch import Batch

POLL_S = 2.0  # how often /history is asked while the WebSocket is quiet


@dataclasses.dataclass
class Deadlines:
    """Seconds: connect, read (any wait for data), request (a whole control request), download (one file),
    progress (a job with no message from its server)."""
    connect: float = 10.0
    read: float = 60.0
    request: float = 120.0
    download: float = 600.0
    progress: float = 600.0

    @classmethod
    def of(cls, options: argparse.Namespace) -> Deadlines:
        deadlines = cls(options.connect_timeout, options.read_timeout, options.request_timeout,
                        options.download_timeout, options.progress_timeout)
        for field in dataclasses.fields(deadlines):
            if not getattr(deadlines, field.name) > 0:
                raise RunnerError(f"--{field.name}-timeout {getattr(deadlines, field.name)}: give seconds above 0")
        return deadlines

    def control(self) -> aiohttp.ClientTimeout:
        import aiohttp
        return aiohttp.ClientTimeout(total=self.request, connect=self.connect, sock_connect=self.connect,
                                     sock_read=self.read)

    def transfer(self) -> aiohttp.ClientTimeout:
        import aiohttp
        return aiohttp.ClientTimeout(total=self.download, connect=self.connect, sock_connect=self.connect,
                                     sock_read=self.read)


class ServerFailed(Exception):
    """The server stopped answering: the job goes to another server."""


class JobFailed(Exception):
    """The workflow failed on a working server (validation or a node error): the item fails."""


class RemoteNode:
    """A node definition from /object_info, shaped as the converter and --set expect (INPUT_TYPES())."""

    def __init__(self, info: dict) -> None:
        self.info = info

    def INPUT_TYPES(self) -> dict[str, dict]:  # noqa: N802 (ComfyUI's name)
        return self.info.get("input") or {}

    @property
    def RETURN_TYPES(self) -> tuple | None:  # noqa: N802 (ComfyUI's name; the runner checks links' output slots)
        outputs = self.info.get("output")
        return tuple(outputs) if isinstance(outputs, list) else None


class Server:
    def __init__(self, url: str, session: aiohttp.ClientSession, deadlines: Deadlines) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.deadlines = deadlines
        self.client_id = f"vcut-runner-{uuid.uuid4().hex[:8]}"
        self.ws = None
        self.texts: list[tuple[str, str]] = []  # (node id, progress text) of the running job, for --sweep

    async def _json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        import aiohttp
        try:
            async with self.session.request(method, self.url + path, **kwargs) as response:
                text = await response.text()
                if response.status >= 500:
                    raise ServerFailed(f"{method} {path} answered {response.status}")
                try:
                    return response.status, json.loads(text) if text else None
                except ValueError:
                    return response.status, text
        except asyncio.TimeoutError:
            raise ServerFailed(f"{method} {path}: no answer within the deadlines (connect {self.deadlines.connect:g} "
                               f"s, read {self.deadlines.read:g} s, whole request {self.deadlines.request:g} s)") \
                from None
        except (aiohttp.ClientError, OSError) as error:
            raise ServerFailed(f"{method} {path}: {type(error).__name__}: {error}") from None
        except ValueError as error:  # a request aiohttp will not send (e.g. a control character in a header)
            raise JobFailed(f"{method} {path}: the request cannot be sent: {error}") from None

    async def probe(self) -> dict:
        """The node definitions of a ComfyUI server; RunnerError when the URL does not answer or is not ComfyUI."""
        try:
            status, stats = await self._json("GET", "/system_stats")
        except ServerFailed as error:
            raise RunnerError(f"--server {self.url} does not answer ({error})") from None
        if status != 200 or not isinstance(stats, dict) or "system" not in stats:
            raise RunnerError(f"--server {self.url} answers but is not a ComfyUI server (GET /system_stats: "
                              f"status {status}, no 'system' entry)")
        status, info = await self._json("GET", "/object_info")
        if status != 200 or not isinstance(info, dict):
            raise RunnerError(f"--server {self.url}: GET /object_info answered {status}")
        version = stats["system"].get("comfyui_version", "?")
        log(f"server {self.url}: ComfyUI {version}, {len(info)} node types")
        return info

    async def connect(self) -> None:
        import aiohttp
        try:
            self.ws = await self.session.ws_connect(f"{self.url}/ws?clientId={self.client_id}", heartbeat=10)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            raise ServerFailed(f"WebSocket: {type(error).__name__}: {error}") from None

    async def upload(self, item: Item, subfolder: str) -> str:
        """The item's file into <input>/<subfolder>/ of the server; returns the name its loaders take."""
        import aiohttp
        form = aiohttp.FormData()
        path = item.path
        try:
            data = path.read_bytes()
        except OSError as error:
            raise JobFailed(f"cannot read {path}: {error}") from None
        # Item.input_name: no newline (it would break the form's header), no name ComfyUI reads as annotated
        form.add_field("image", data, filename=item.input_name)
        form.add_field("type", "input")
        form.add_field("subfolder", subfolder)
        status, answer = await self._json("POST", "/upload/image", data=form)
        if status != 200 or not isinstance(answer, dict) or "name" not in answer:
            raise JobFailed(f"the server refused the upload of {path.name} (status {status}: {answer})")
        return f"{answer.get('subfolder') or subfolder}/{answer['name']}"

    async def run(self, prompt: dict, item: Item) -> dict:
        """Submit, follow the WebSocket until our prompt ends, return its /history entry."""
        if self.ws is None or self.ws.closed:
            await self.connect()
        prompt_id = str(uuid.uuid4())
        self.texts = []
        status, answer = await self._json("POST", "/prompt", json={"prompt": prompt, "client_id": self.client_id,
                                                                   "prompt_id": prompt_id})
        if status != 200:
            answer = answer if isinstance(answer, dict) else {"error": {"message": str(answer)}}
            raise JobFailed(format_validation(answer.get("error") or {}, answer.get("node_errors") or {}, prompt))
        log(f"[{item.index}] {item.label} -> {self.url} (prompt {prompt_id})")
        try:
            return await self.follow(prompt_id, prompt, item)
        except ServerFailed:
            await self.cancel(prompt_id)
            raise

    async def follow(self, prompt_id: str, prompt: dict, item: Item) -> dict:
        """Wait for the end of our prompt; ServerFailed after deadlines.progress s without a message."""
        heard = time.monotonic()
        while True:
            message = await self._receive()
            if message is None and time.monotonic() - heard > self.deadlines.progress:
                raise ServerFailed(f"no message about the job for {self.deadlines.progress:g} s (--progress-timeout)")
            if message is not None:
                heard = time.monotonic()
                kind, data = message.get("type"), message.get("data") or {}
                if data.get("prompt_id") not in (None, prompt_id):
                    continue
                if kind == "progress":
                    log(f"  [{item.index}] {self.url} node {data.get('node')} step "
                        f"{data.get('value')}/{data.get('max')}")
                    continue
                ended = kind in ("execution_success", "execution_error", "execution_interrupted") or (
                    kind == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id)
                if not ended:
                    continue
            entry = await self.history(prompt_id)
            if entry and (entry.get("status") or {}).get("completed") is not None:
                return self.check(entry, prompt)

    async def _receive(self) -> dict | None:
        """The next JSON message of the WebSocket, None after POLL_S of quiet; ServerFailed when it closes."""
        import aiohttp
        try:
            message = await self.ws.receive(timeout=POLL_S)
        except asyncio.TimeoutError:
            return None
        except (aiohttp.ClientError, OSError) as error:
            raise ServerFailed(f"WebSocket: {error}") from None
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                            aiohttp.WSMsgType.ERROR):
            raise ServerFailed("its WebSocket closed")
        if message.type == aiohttp.WSMsgType.BINARY:  # preview images, and nodes' progress texts (reports)
            text = progress_text(message.data)
            if text is not None:
                self.texts.append(text)
            return None
        if message.type != aiohttp.WSMsgType.TEXT:
            return None
        try:
            return json.loads(message.data)
        except ValueError:
            return None

    async def cancel(self, prompt_id: str) -> None:
        """Best effort: our job off a dropped server, so that it does not keep running there for nobody."""
        import aiohttp
        quick = aiohttp.ClientTimeout(total=self.deadlines.connect)
        try:
            status, _ = await self._json("POST", f"/api/jobs/{prompt_id}/cancel", timeout=quick)
            if status in (404, 405):  # ComfyUI 0.8.0: no /api/jobs cancel, the queue and interrupt calls instead
                await self._json("POST", "/queue", json={"delete": [prompt_id]}, timeout=quick)
                status, _ = await self._json("POST", "/interrupt", json={"prompt_id": prompt_id}, timeout=quick)
        except ServerFailed as error:
            log(f"server {self.url}: could not cancel prompt {prompt_id} ({error})")
            return
        log(f"server {self.url}: cancelled prompt {prompt_id}" if status == 200 else
            f"server {self.url}: cancelling prompt {prompt_id} answered {status}")

    async def history(self, prompt_id: str) -> dict | None:
        status, answer = await self._json("GET", f"/history/{prompt_id}")
        return answer.get(prompt_id) if status == 200 and isinstance(answer, dict) else None

    @staticmethod
    def check(entry: dict, prompt: dict) -> dict:
        status = entry.get("status") or {}
        if status.get("status_str") == "success" and status.get("completed"):
            return entry
        errors = [data for event, data in status.get("messages") or []
                  if event in ("execution_error", "execution_interrupted")]
        ended = f"the prompt ended with status {status.get('status_str')!r}"
        raise JobFailed(execution_errors(errors, prompt) or ended)

    async def download(self, file: dict, target: pathlib.Path) -> pathlib.Path:
        """One written file via /view to `target` (batch.inside: in the item's folder), never over another file."""
        import aiohttp
        params = {"filename": file["filename"], "subfolder": file.get("subfolder", ""), "type": "output"}
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            async with self.session.get(self.url + "/view", params=params,
                                        timeout=self.deadlines.transfer()) as response:
                if response.status != 200:
                    raise JobFailed(f"GET /view {file['filename']!r} answered {response.status}")
                with open(partial, "wb") as f:
                    async for chunk in response.content.iter_chunked(1 << 20):
                        f.write(chunk)
        except asyncio.TimeoutError:
            partial.unlink(missing_ok=True)
            raise ServerFailed(f"GET /view {file['filename']!r}: not done within the deadlines (read "
                               f"{self.deadlines.read:g} s, download {self.deadlines.download:g} s)") from None
        except (aiohttp.ClientError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise ServerFailed(f"GET /view: {type(error).__name__}: {error}") from None
        return move_new(partial, target)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class Scheduler:
    """Items handed to one worker per server; an item whose server failed goes back to the front of the queue."""

    def __init__(self, items: list[Item], prompt: dict, batch: Batch, output_dir: pathlib.Path, total: int) -> None:
        self.pending = collections.deque(items)
        self.running = 0
        self.prompt, self.batch = prompt, batch
        self.output_dir, self.total = output_dir, total
        self.results: list[Result] = []
        self.subfolder = f"vcut-batch-{uuid.uuid4().hex[:8]}"

    async def worker(self, server: Server) -> None:
        while self.pending or self.running:
            if not self.pending:  # another server's item may still come back
                await asyncio.sleep(0.2)
                continue
            item = self.pending.popleft()
            early = self.batch.start(item)  # claimed (an item back from a failed server is still this run's)
            if early is not None:  # done meanwhile, or another run holds it
                self.results.append(early)
                log(item_line(early, self.total))
                continue
            self.running += 1
            item.attempts += 1
            began = time.perf_counter()
            try:
                result = await self.run_item(server, item, began)
            except ServerFailed as error:
                log(f"server {server.url} failed ({error}); [{item.index}] {item.label} goes to another server")
                self.pending.appendleft(item)
                return  # this server is done for the batch
            finally:
                self.running -= 1
            self.finish(result)

    async def run_item(self, server: Server, item: Item, began: float) -> Result:
        try:
            prompt = item.prompt or self.prompt  # a --sweep item: its grid point's values set
            if self.batch.input:
                name = await server.upload(item, self.subfolder)
                prompt = with_input(prompt, self.batch.targets, self.batch.input.input, name)
            entry = await server.run(prompt, item)
            item_dir = self.output_dir / item.name
            try:  # every name checked before anything is written
                files = [(f, inside(item_dir, f.get("subfolder", ""), f.get("filename")))
                         for _, f in output_entries(entry)]
            except ValueError as error:
                raise JobFailed(f"{error} (the server {server.url} named it in /history); "
                                "nothing was downloaded") from None
            try:
                self.batch.check(item)  # still this run's item: else the run that took it over downloads them
            except LeaseLost as error:
                raise JobFailed(str(error)) from None
            outputs = [str(await server.download(f, target)) for f, target in files]
            metrics = self.batch.sweep.measure(server.texts, prompt) if self.batch.sweep is not None else None
            return Result(item, "ok", outputs, time.perf_counter() - began, server=server.url, reported=len(files),
                          metrics=metrics)
        except JobFailed as error:
            return Result(item, "failed", [], time.perf_counter() - began, str(error), server.url)

    def finish(self, result: Result) -> None:
        result = self.batch.commit(result)
        self.results.append(result)
        log(item_line(result, self.total))


async def run_batch(options: argparse.Namespace, workflow: dict) -> int:
    import aiohttp
    deadlines = Deadlines.of(options)
    with Lease() as lease:  # holds the claim of each item while it runs (batch.Batch)
        async with aiohttp.ClientSession(timeout=deadlines.control()) as session:
            return await run_with(options, workflow, deadlines, session, lease)


async def run_with(options: argparse.Namespace, workflow: dict, deadlines: Deadlines, session: aiohttp.ClientSession,
                   lease: Lease) -> int:
    """Probe the servers, plan the batch, run it (one worker per server), print the summary."""
    servers, definitions = [], None
    for url in dict.fromkeys(options.server):  # each URL once
        server = Server(url, session, deadlines)
        try:
            info = await server.probe()
        except RunnerError as error:
            log(f"skipping {error}")
            continue
        servers.append(server)
        definitions = definitions or info
    if not servers:
        raise RunnerError("no --server answered as a ComfyUI server: " + ", ".join(options.server))
    node_classes = {name: RemoteNode(info) for name, info in definitions.items()}
    display = {name: info.get("display_name") or name for name, info in definitions.items()}
    prompt = prepare_prompt(options, workflow, node_classes, display)
    output_dir = pathlib.Path(options.output_dir).resolve()  # checked and created by cli.run
    batch = plan(options, output_dir, prompt, node_classes, lease)
    for result in batch.skipped:
        log(item_line(result, len(batch.items)))
    done = {r.item.index for r in batch.skipped}
    scheduler = Scheduler([i for i in batch.items if i.index not in done], prompt, batch, output_dir,
                          len(batch.items))
    start = time.perf_counter()
    try:
        await asyncio.gather(*(scheduler.worker(s) for s in servers))
    finally:
        for server in servers:
            await server.close()
    for item in scheduler.pending:  # every server failed before these ran
        early = batch.start(item)
        if early is not None:
            scheduler.results.append(early)
            log(item_line(early, scheduler.total))
        else:
            scheduler.finish(Result(item, "failed", [], 0.0, "every server failed before this item could run"))
    if batch.sweep is not None:
        batch.sweep.write(batch.skipped + scheduler.results, output_dir)
    return summary(batch.skipped + scheduler.results, batch.manifest.path, time.perf_counter() - start)


def run_on_servers(options: argparse.Namespace, workflow: dict) -> int:
    if not options.output_dir:
        raise RunnerError("--server: give --output-dir, the local folder the servers' outputs are downloaded into")
    try:
        import aiohttp  # noqa: F401  (ComfyUI's own requirement: its Python has it)
    except ImportError:
        raise RunnerError("--server needs aiohttp: run the runner with ComfyUI's Python (it has aiohttp)") from None
    return asyncio.run(run_batch(options, workflow))
