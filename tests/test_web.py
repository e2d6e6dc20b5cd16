"""--web: the API and WebSocket against a real aiohttp server, and the page in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, cadenza_command
from streamer.controls import Controls
from streamer.web import STUCK_SECONDS, WebSurface


def _request(url: str, body=None, token: str | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token:
        request.add_header("X-Cadenza-Token", token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read()
        return error.code, json.loads(text) if text.startswith(b"{") else {"error": text.decode(errors="replace")}


@pytest.fixture
def served():
    controls = Controls(temperature=1.0, density=6.0)
    surface = WebSurface(controls, "127.0.0.1", 0)
    surface.start()
    yield controls, surface, f"http://127.0.0.1:{surface.port}"
    surface.close()


def test_state_and_a_change_applied(served):
    controls, _, base = served
    status, state = _request(base + "/api/state")
    assert status == 200 and state["temperature"] == 1.0 and state["density"] == 6.0 and state["notes_played"] == 0
    assert {"temperature", "density", "key", "instrument", "tempo_scale", "paused", "notes_played"} <= set(state)
    status, state = _request(base + "/api/controls", {"temperature": 0.5, "key": "d minor", "instrument": 40,
                                                      "density": 0, "dynamics": 90, "tempo_scale": 1.5, "paused": True})
    assert status == 200 and state["key"] == "D minor" and state["density"] is None
    assert (controls.temperature, controls.program, controls.dynamics, controls.tempo_scale, controls.paused) == (
        0.5, 40, 90.0, 1.5, True)
    assert _request(base + "/api/controls", {"panic": True})[0] == 200 and controls.silence.is_set()


@pytest.mark.parametrize("body, words", [
    ({"volume": 3}, "unknown control 'volume'"), ({"temperature": 0}, "outside"), ({"temperature": "hot"}, "number"),
    ({"temperature": 1.0, "key": "H major"}, "key"), ({"instrument": 200}, "0-127"), ({"instrument": 1.5}, "0-127"),
    ({"density": 500}, "outside"), ({"paused": "yes"}, "true or false"), ({"panic": False}, "panic"),
    ([1, 2], "JSON object"),
])
def test_a_bad_value_is_400_with_one_line_and_changes_nothing(served, body, words):
    controls, _, base = served
    before = (controls.temperature, controls.key, controls.program, controls.density, controls.paused)
    status, answer = _request(base + "/api/controls", body)
    assert status == 400 and words in answer["error"] and "\n" not in answer["error"], answer
    assert (controls.temperature, controls.key, controls.program, controls.density, controls.paused) == before


def test_nan_not_json_and_a_huge_body(served):
    controls, _, base = served
    assert _request(base + "/api/controls", raw=b'{"temperature": NaN}')[0] == 400
    assert _request(base + "/api/controls", raw=b"temperature=1")[0] == 400
    assert _request(base + "/api/controls", raw=b"{" + b" " * (70 * 1024) + b"}")[0] == 413
    assert controls.temperature == 1.0


def test_beyond_loopback_every_request_needs_the_token():
    surface = WebSurface(Controls(), "127.0.0.1", 0, token="s3cret")  # as a non-loopback bind gets one
    surface.start()
    try:
        base = f"http://127.0.0.1:{surface.port}"
        assert _request(base + "/api/state")[0] == 401
        assert _request(base + "/api/controls", {"temperature": 0.5})[0] == 401
        assert _request(base + "/api/state", token="wrong")[0] == 401
        assert _request(base + "/api/state", token="s3cret")[0] == 200
        assert _request(base + "/api/state?token=s3cret")[0] == 200
        assert "?token=s3cret" in surface.url
    finally:
        surface.close()
    assert WebSurface(Controls(), "0.0.0.0", 0).token  # bound beyond loopback: a token of its own


def test_ten_clients_one_never_reading_is_dropped_and_the_rest_hear_every_note(served):
    """The engine's side (publish_note) never waits; the client that never reads is dropped."""
    import asyncio

    import aiohttp

    controls, surface, base = served
    silent = socket.socket()
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small, before connecting; then never read
    silent.connect(("127.0.0.1", surface.port))
    silent.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

    async def listen(received: list, count: int):
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(base + "/ws") as websocket:
                received.append("open")
                async for message in websocket:
                    data = json.loads(message.data)
                    if data["type"] == "note":
                        received.append(data)
                    if sum(1 for r in received if r != "open") >= count:
                        return

    async def main():
        received = [[] for _ in range(9)]
        notes = 3000  # about 330 kB each: more than the sockets and buffers in between hold
        listeners = [asyncio.ensure_future(listen(r, notes)) for r in received]
        while not all(r for r in received) or len(surface.clients) < 10:
            await asyncio.sleep(0.02)
        for index in range(notes):
            controls.publish_note(time.monotonic(), 60 + index % 24, 80, 0.1, "cadenza")
            if index % 50 == 49:
                await asyncio.sleep(0.06)  # the broadcaster sends each batch
        await asyncio.wait_for(asyncio.gather(*listeners), timeout=30)
        return received

    filler = threading_pad(surface, controls)
    received = asyncio.run(main())
    # The silent client is dropped once a send has waited STUCK_SECONDS on it. Its socket fills only
    # after the kernel's buffers have taken what they can, and on a fast host the readers had every
    # note 1 s after that: the state the pad keeps changing goes on to it meanwhile.
    deadline = time.monotonic() + STUCK_SECONDS + 10.0
    while surface.dropped_clients == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    filler.stop()
    silent.close()
    assert all(len(r) - 1 == 3000 for r in received), [len(r) - 1 for r in received]
    assert [n["pitch"] for n in received[0][1:6]] == [60, 61, 62, 63, 64]
    assert surface.dropped_clients == 1  # the publisher only ever put_nowait: how long that took is bench/'s
    assert _request(base + "/api/state")[0] == 200


class threading_pad:
    """Big state messages pushed at the clients, so the one that never reads fills its socket and
    its queue: as a slow phone on Wi-Fi would, only sooner."""

    def __init__(self, surface, controls):
        import threading

        self._running = True
        self._thread = threading.Thread(target=self._run, args=(controls,), daemon=True)
        self._thread.start()

    def _run(self, controls):
        value = 0.1
        while self._running:
            controls.set_temperature(value)
            value = 0.1 + (value + 0.01) % 1.5
            time.sleep(0.002)

    def stop(self):
        self._running = False
        self._thread.join()


@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver (make test installs it)")
def test_the_page_in_headless_chromium_shows_notes_and_steers_the_stream(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stream = subprocess.Popen(cadenza_command("stream", "--no-keys", "--seconds", "40", "--bpm", "100", "--seed", "2",
                                              "--audio-driver", "file", "--wav", str(tmp_path / "t.wav"),
                                              "--web", f"127.0.0.1:{port}"),
                              cwd=REPO, stderr=subprocess.PIPE, text=True)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    browser = None
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while _try_state(base) is None:
            assert time.monotonic() < deadline and stream.poll() is None, "the page was never served"
            time.sleep(0.2)
        browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
        browser.get(base + "/")
        deadline = time.monotonic() + 20
        while browser.execute_script("return notes.length") < 20:
            assert time.monotonic() < deadline, "no notes reached the page"
            time.sleep(0.2)
        assert browser.execute_script("return notes.some(n => n.source === 'cadenza')")
        # Move the temperature slider as a user would (its value, then the change event).
        browser.execute_script("const t = document.getElementById('temperature'); t.value = 0.45;"
                               "t.dispatchEvent(new Event('input')); t.dispatchEvent(new Event('change'));")
        deadline = time.monotonic() + 5
        while _try_state(base)["temperature"] != 0.45:
            assert time.monotonic() < deadline, _try_state(base)
            time.sleep(0.1)
        time.sleep(1.5)  # a fuller roll for the picture
        shot = tmp_path / "web_page.png"
        browser.save_screenshot(str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        docs = Path(REPO) / "docs" / "web_page.png"
        if not docs.exists():
            shutil.copy(shot, docs)  # the README's picture, made once by this test
    finally:
        if browser:
            browser.quit()
        stream.terminate()
        stream.communicate(timeout=30)
    assert stream.returncode == 0


def _try_state(base: str):
    try:
        status, state = _request(base + "/api/state")
        return state if status == 200 else None
    except OSError:
        return None
