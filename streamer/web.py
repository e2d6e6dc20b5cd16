"""`cadenza stream --web`: a page to watch and steer the stream, served by aiohttp on a thread of its own.

GET /              the page (streamer/web_static/: a piano roll, the state, a control for each)
GET /api/state     {"temperature", "density", "key", "dynamics", "instrument", "tempo_scale", "paused",
                    "notes_played", "answer", "bpm", "beat_zero", "turn"}
POST /api/controls any of temperature, density, key, dynamics, instrument, tempo_scale, paused, panic:
                   all checked first; one bad value is HTTP 400 with one line, and nothing changes
GET /ws            one JSON message per note ({"type": "note", onset, pitch, velocity, duration, source})
                   and per change of state ({"type": "state", ...})

Bound beyond 127.0.0.1 it needs the token printed at start (in the URL, `?token=`, or the header
X-Cadenza-Token) on every request and WebSocket. The engine never waits on the page: notes come
through a bounded feed; a client that stops reading (its socket takes nothing for STUCK_SECONDS)
or falls CLIENT_QUEUE messages behind is dropped.
"""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
import time
from importlib import resources
from socket import SO_SNDBUF, SOL_SOCKET

from models.errors import CadenzaError
from streamer.control_values import BadControl, checked_change

MAX_BODY_BYTES = 64 * 1024
CLIENT_QUEUE = 4096  # messages a client may fall behind before it is dropped (the memory it may hold)
# A client whose socket has taken nothing for this long has stopped reading, and is dropped. Not a
# queue's length: a page that reads fell 256 behind when the server's own thread was held up (a
# loaded 2-core machine), and every page was dropped at once.
STUCK_SECONDS = 2.0
# Notes the engine may hand over while the server's thread is held up (seconds of it at any real
# stream's rate; 5 s at the test's 830 notes/s) before the page misses some. About 2 MB at most.
FEED_NOTES = 4096
SEND_BUFFER_BYTES = 32 * 1024  # the kernel's buffer for a page's socket (Linux grows one to 4 MB otherwise)
STATE_SECONDS = 0.05  # how often the state is compared for changes
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def checked_changes(body) -> list:
    """[(setter name, value)] for a POST body; BadControl naming the first thing wrong."""
    if not isinstance(body, dict):
        raise BadControl("the body must be a JSON object of controls")
    changes = []
    for name, value in body.items():
        if name == "paused":
            if not isinstance(value, bool):
                raise BadControl("paused must be true or false")
            changes.append(("paused", value))
        elif name == "panic":
            if value is not True:
                raise BadControl("panic must be true")
            changes.append(("panic", True))
        else:
            changes.append(checked_change(name, value))
    return changes


def apply_changes(controls, changes: list) -> None:
    for setter, value in changes:
        if setter == "paused":
            controls.paused = value
        elif setter == "panic":
            controls.silence.set()
        else:
            getattr(controls, setter)(value)


def state_of(controls) -> dict:
    clock = controls.musical_clock
    bpm = getattr(clock, "bpm", None) if clock is not None else None
    zero = clock.time_of_beat(0.0) if bpm else None
    density = controls.density
    return {"temperature": round(controls.temperature, 4), "density": density if isinstance(density, (str, type(None)))
            else round(density, 3), "key": controls.key, "dynamics": controls.dynamics, "instrument": controls.program,
            "tempo_scale": round(controls.tempo_scale, 4), "paused": controls.paused,
            "notes_played": controls.notes_played, "answer": controls.answer,
            "bpm": round(bpm, 3) if bpm else None, "beat_zero": None if zero is None else round(zero - controls.started, 4),
            "turn": controls.turn_state}


class WebSurface:
    """The page, the API and the WebSocket, on a thread with its own event loop."""

    name = "web"

    def __init__(self, controls, host: str = "127.0.0.1", port: int = 8765, token: str | None = None):
        self.controls = controls
        self.host, self.port = host, port
        self.token = token if token is not None else (None if host in LOOPBACK else secrets.token_urlsafe(16))
        self.feed = controls.subscribe_notes(FEED_NOTES)
        self.clients: set = set()
        self.dropped_clients = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: str | None = None
        self._runner = None
        self._thread = threading.Thread(target=self._serve, name="web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)
        if self._failure:
            raise CadenzaError(self._failure)

    def close(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._open())
        except OSError as error:
            self._failure = f"cannot serve --web on {self.host}:{self.port}: {error.strerror or error}"
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    async def _open(self) -> None:
        from aiohttp import web

        @web.middleware
        async def check_token(request, handler):
            if self.token is not None:
                given = request.query.get("token") or request.headers.get("X-Cadenza-Token", "")
                if not secrets.compare_digest(given, self.token):
                    return web.json_response({"error": "a token is needed: open the URL cadenza printed"}, status=401)
            return await handler(request)

        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[check_token])
        app.router.add_get("/", self._page)
        app.router.add_get("/app.js", self._script)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/controls", self._post_controls)
        app.router.add_get("/ws", self._websocket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # the port asked for, or the one given for 0
        self._pump = asyncio.ensure_future(self._broadcast())

    async def _shutdown(self) -> None:
        self._pump.cancel()
        for client in list(self.clients):
            await client.close()
        await self._runner.cleanup()

    async def _page(self, request):
        from aiohttp import web

        return web.Response(text=_static("index.html"), content_type="text/html")

    async def _script(self, request):
        from aiohttp import web

        return web.Response(text=_static("app.js"), content_type="application/javascript")

    async def _state(self, request):
        from aiohttp import web

        return web.json_response(state_of(self.controls))

    async def _post_controls(self, request):
        from aiohttp import web

        try:
            body = json.loads(await request.text())
        except web.HTTPRequestEntityTooLarge:
            raise
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        try:
            changes = checked_changes(body)
        except BadControl as error:
            return web.json_response({"error": str(error)}, status=400)
        apply_changes(self.controls, changes)
        return web.json_response(state_of(self.controls))

    async def _websocket(self, request):
        from aiohttp import web

        socket = web.WebSocketResponse(heartbeat=10)
        connection = request.transport.get_extra_info("socket") if request.transport else None
        if connection is not None:  # a client that stops reading is seen within ~100 kB, not after megabytes
            connection.setsockopt(SOL_SOCKET, SO_SNDBUF, SEND_BUFFER_BYTES)
        await socket.prepare(request)
        socket.outbox = asyncio.Queue()
        socket.sending_since = None  # monotonic seconds a send has waited on the client since
        self.clients.add(socket)
        await socket.send_json({"type": "state", "now": self._stream_seconds(), **state_of(self.controls)})
        writer = asyncio.ensure_future(self._write(socket))
        try:
            async for _ in socket:  # the page sends nothing; this notices it leaving
                pass
        finally:
            writer.cancel()
            self.clients.discard(socket)
        return socket

    def _stream_seconds(self) -> float:
        """Seconds since the stream started: the clock of every onset the page gets."""
        return round(time.monotonic() - self.controls.started, 4)

    async def _write(self, socket) -> None:
        while True:
            message = await socket.outbox.get()
            socket.sending_since = time.monotonic()
            await socket.send_str(message)  # waits while the client's socket is full
            socket.sending_since = None

    async def _broadcast(self) -> None:
        """Notes from the feed and state changes to every client; a client that stopped reading or
        fell too far behind is dropped."""
        last_state = None
        while True:
            messages = []
            while True:
                try:
                    note = self.feed.get_nowait()
                except queue.Empty:
                    break
                messages.append(json.dumps({"type": "note", **{k: v for k, v in note.items() if k != "onset_monotonic"}}))
            state = state_of(self.controls)
            if state != last_state:
                last_state = state
                messages.append(json.dumps({"type": "state", "now": self._stream_seconds(), **state}))
            now = time.monotonic()
            for client in list(self.clients):
                stuck = client.sending_since is not None and now - client.sending_since > STUCK_SECONDS
                if not stuck and client.outbox.qsize() + len(messages) <= CLIENT_QUEUE:
                    for message in messages:
                        client.outbox.put_nowait(message)
                else:
                    self.clients.discard(client)
                    self.dropped_clients += 1
                    asyncio.ensure_future(client.close())
            await asyncio.sleep(STATE_SECONDS)


def _static(name: str) -> str:
    return resources.files("streamer").joinpath("web_static", name).read_text()
