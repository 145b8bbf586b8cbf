"""The play page and its WebSocket (Starlette, served by uvicorn).

One session at a time: a second tab is told so and closed. The tick loop runs at a fixed
rate; the model steps in one worker thread, and a tick that is still computing when the
next is due makes that one wait rather than queue (the newest frame wins). Each tick sends
the dream (and the real env) as binary PNG messages, a one-byte tag first (0 dream, 1 real),
then a JSON state that acknowledges the newest input it used (`ack`), from which the page
measures key-to-frame latency. Client messages are JSON; anything malformed is logged in
one line and ignored. The page reaches nothing but `/`, `/ws`: no file is served by name.
"""
from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Callable

from wmtool.play.frames import png

DREAM, REAL = 0, 1
MAX_MESSAGE = 4096  # bytes: every client message is small
CONTROLS = ("pause", "resume", "step", "reset", "restart", "resync", "policy", "human")


class Input:
    """What the page asked for since the last tick."""

    def __init__(self):
        self.held: set[str] = set()
        self.axes: list[float] | None = None
        self.ack = 0
        self.ops: list[str] = []
        self.sets: list[tuple[str, float]] = []

    def take(self, message: str, log: Callable[[str], None]) -> None:
        """Apply one client message; anything else than the protocol is logged, ignored."""
        try:
            if len(message) > MAX_MESSAGE:
                raise ValueError(f"{len(message)} bytes")
            msg = json.loads(message)
            kind = msg["type"]
            if kind == "keys":
                held = msg["held"]
                if not isinstance(held, list) or not all(isinstance(k, str) and len(k) < 32
                                                         for k in held):
                    raise ValueError("held must be a list of key names")
                self.held = set(held[:16])
            elif kind == "axes":
                self.axes = [float(a) for a in msg["axes"][:16]]
            elif kind == "control":
                if msg["op"] not in CONTROLS:
                    raise ValueError(f"unknown op {msg['op']!r}")
                self.ops.append(msg["op"])
            elif kind == "set":
                self.sets.append((str(msg["name"])[:32], float(msg["value"])))
            else:
                raise ValueError(f"unknown type {kind!r}")
            self.ack = max(self.ack, int(msg.get("seq", 0)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log(f"play: ignored a malformed message ({type(exc).__name__}: {exc})")


def advance(session, inp: Input) -> list:
    """One tick of the session under the page's input; the frames and state to send."""
    ops, inp.ops = inp.ops, []
    for name, value in inp.sets:
        session.world.set_control(name, value)
    inp.sets = []
    stepped = False
    for op in ops:
        if op in ("pause", "resume"):
            session.paused = op == "pause"
        elif op == "policy" or op == "human":
            session.policy = op == "policy"
        elif op == "reset":
            session.reset()
        elif op == "restart":
            session.reset(same_start=True)
        elif op == "resync":
            session.resync()
        elif op == "step":
            session.tick(inp.held, inp.axes)
            stepped = True
    if not session.paused and not stepped:
        session.tick(inp.held, inp.axes)
    frame = session.frame()
    out = [bytes([DREAM]) + png(frame.dream)]
    if frame.real is not None:
        out.append(bytes([REAL]) + png(frame.real))
    state = frame.state() | {"ack": inp.ack, "paused": session.paused,
                             "policy": session.policy}
    out.append(json.dumps(state))
    return out


def make_app(session, fps: float, log: Callable[[str], None]):
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocketDisconnect

    page = resources.files("wmtool.play").joinpath("page.html").read_text()
    worker = ThreadPoolExecutor(1, thread_name_prefix="play-model")  # torch in one thread
    busy = asyncio.Lock()

    async def index(request):
        return HTMLResponse(page)

    async def play(ws):
        host = ws.headers.get("host", "")
        origin = ws.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != host:
            log(f"play: refused a WebSocket from another origin ({origin})")
            await ws.close(code=1008)
            return
        await ws.accept()
        if busy.locked():
            await ws.send_text(json.dumps({"type": "error", "message":
                                           "another tab is playing this run; close it, or "
                                           "start another `wmtool play` on another port"}))
            await ws.close(code=1013)
            return
        async with busy:
            inp = Input()
            await ws.send_text(json.dumps(session.describe() | {"fps": fps}))
            loop = asyncio.get_running_loop()

            async def receive():
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    if message.get("text") is not None:
                        inp.take(message["text"], log)
                    else:
                        log("play: ignored a binary message")

            reader = asyncio.create_task(receive())
            period, due = 1.0 / fps, time.perf_counter()
            try:
                while not reader.done():
                    out = await loop.run_in_executor(worker, advance, session, inp)
                    for item in out:
                        await (ws.send_bytes(item) if isinstance(item, bytes)
                               else ws.send_text(item))
                    due = max(due + period, time.perf_counter())
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
            except (WebSocketDisconnect, RuntimeError):
                pass  # the tab closed mid-send
            finally:
                reader.cancel()

    return Starlette(routes=[Route("/", index), WebSocketRoute("/ws", play)])


def serve(session, host: str, port: int, fps: float, log: Callable[[str], None],
          on_ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C / SIGTERM (uvicorn's own handling: a clean stop)."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)  # connections queue from now on: the URL printed next already answers
    url_host = f"[{host}]" if ":" in host else host
    server = uvicorn.Server(uvicorn.Config(make_app(session, fps, log), log_level="warning",
                                           ws="websockets-sansio", lifespan="off"))
    on_ready(f"http://{url_host}:{sock.getsockname()[1]}/")
    server.run(sockets=[sock])
