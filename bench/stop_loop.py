"""The stop loop under load: streams stopped every way there is, with busy loops beside them.

`python -m bench.stop_loop --streams 40 --busy 2` (`make stop-loop`) starts a private JACK server
(dummy driver, 64 frames, no real-time priority: a normal user's), `--busy` processes spinning
`while True: pass`, and then `--streams` streams one after the other, each stopped by the next
ending in turn: the end of --notes, --seconds, SIGINT, SIGTERM, SIGHUP, SIGQUIT, CC123 then
SIGINT, the --connect port vanishing, and kill -9 of the engine (its sender sees the pipe close).
A listener on cadenza's port counts the notes it heard start and never heard end (all-notes-off
ends a channel's), and every --record take is read back. It waits for what arrived (the stop's
last message, or 5 s), never for a fixed time. Exit 1 if any note was left sounding, a take
was unreadable or an exit code was not the documented one.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido

from bench.soak import hanging_notes
from bench.stream_timing import BACKEND, REPO, StampedListener, private_jack_server
from streamer.outputs import midi_backend

PERIOD_FRAMES = 64
# (ending, exit code it documents)
ENDINGS = [("notes", 0), ("seconds", 0), ("SIGINT", 0), ("SIGTERM", 0), ("SIGHUP", 0), ("SIGQUIT", 0),
           ("cc123", 0), ("vanish", 1), ("kill-9", None)]


def _command(index: int, ending: str, record: Path, control: str) -> list[str]:
    command = [sys.executable, "-m", "cadenza_cli", "stream", "--midi-api", "jack", "--no-keys", "--seed", str(index),
               "--record", str(record), "--control-port", control]
    if ending == "notes":
        command += ["--notes", "8"]
    elif ending == "seconds":
        command += ["--seconds", "2.5"]
    return command + (["--connect", f"sink{index}"] if ending == "vanish" else ["--port", f"loop{index}"])


def _wait_for_notes(listener: StampedListener, count: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(1 for _, _, data in list(listener._events) if data[0] & 0xF0 == 0x90 and data[2] > 0) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} notes in {timeout:g} s")
        time.sleep(0.01)


def _wait_for_all_notes_off(listener: StampedListener, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(data == bytes([0xBF, 123, 0]) for _, _, data in list(listener._events)):
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _unreleased_in_take(record: Path) -> int | None:
    """Notes the take starts and never ends; None if it cannot be read."""
    try:
        messages = list(mido.MidiFile(str(record)))
    except (OSError, EOFError, ValueError):
        return None
    return hanging_notes([(0, bytes(message.bytes())) for message in messages if not message.is_meta])


def stop_one(index: int, ending: str, folder: Path, control_out) -> dict:
    """One stream, stopped by `ending`: {ending, left (at the listener), take (left in it or None), code}."""
    record = folder / f"take{index}.mid"
    env = dict(os.environ, MIDO_BACKEND=BACKEND)
    # 'vanish': cadenza connects to a virtual input of ours, which is then closed under it.
    listener = _VirtualSink(f"sink{index}") if ending == "vanish" else None
    process = subprocess.Popen(_command(index, ending, record, "stoploop-control"), cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        if ending != "vanish":
            listener = _listen_when_ready(f":loop{index}")
        try:
            _wait_for_notes(listener, 4)
        except TimeoutError as error:
            code = process.poll()
            process.kill()
            last = (process.communicate(timeout=10)[1] or "").strip().splitlines()[-3:]
            raise TimeoutError(f"stream {index} ({ending}): {error}; exit {code}; its last words: {last}") from None
        if ending == "cc123":
            control_out.send(mido.Message("control_change", control=123, value=0))
            time.sleep(0.2)
            process.send_signal(signal.SIGINT)
        elif ending == "kill-9":
            process.send_signal(signal.SIGKILL)
        elif ending == "vanish":
            listener.vanish()
        elif ending.startswith("SIG"):
            process.send_signal(getattr(signal, ending))
        code = process.wait(timeout=30)
        deadline = time.monotonic() + 10  # after kill -9 the sender writes the take on its own
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if ending != "vanish":
            _wait_for_all_notes_off(listener)
        heard = listener.stopped_events()
        # A vanished port hears nothing more: there the take alone tells whether every note ended.
        left = 0 if ending == "vanish" else hanging_notes([(0, data) for _, _, data in heard])
    finally:
        process.kill()
    time.sleep(0.5 if ending == "kill-9" else 0.0)  # the orphaned sender finishes the take
    return {"ending": ending, "left": left, "take": _unreleased_in_take(record), "code": code}


class _VirtualSink:
    """A virtual JACK input that cadenza connects to (--connect), and then closes (it 'vanishes')."""

    def __init__(self, name: str):
        import rtmidi

        self._events, self._closed = [], False
        self._input = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="sink")
        self._input.ignore_types(sysex=False, timing=False, active_sense=False)
        self._input.set_callback(lambda event, _: self._events.append((time.monotonic(), 0.0, bytes(event[0]))))
        self._input.open_virtual_port(name)

    def vanish(self) -> None:
        time.sleep(0.2)
        self._input.close_port()
        self._input.delete()
        self._closed = True

    def stopped_events(self) -> list:
        return list(self._events)


def _listen_when_ready(suffix: str, timeout: float = 20.0) -> StampedListener:
    backend = midi_backend("jack")
    deadline = time.monotonic() + timeout
    while not any(name.endswith(suffix) for name in backend.get_input_names()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no port {suffix}")
        time.sleep(0.05)
    listener = StampedListener(suffix)
    listener.stopped_events = lambda: (listener.close(), list(listener._events))[1]
    return listener


def run(streams: int, busy: int, folder: Path, endings: list[str] | None = None) -> list[dict]:
    """The loop on the JACK server named by JACK_DEFAULT_SERVER, with `busy` busy loops beside it;
    the streams take the `endings` (default: all of ENDINGS) in turn."""
    endings = endings or [ending for ending, _ in ENDINGS]
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    control_out = midi_backend("jack").open_output("stoploop-control", virtual=True, client_name="stoploop")
    try:
        return [stop_one(index, endings[index % len(endings)], folder, control_out) for index in range(streams)]
    finally:
        control_out.close()
        for spinner in spinners:
            spinner.kill()


def failures(results: list[dict]) -> list[str]:
    documented = dict(ENDINGS)
    problems = []
    for index, row in enumerate(results):
        if row["left"]:
            problems.append(f"stream {index} ({row['ending']}): {row['left']} notes left sounding at the listener")
        if row["take"] is None or row["take"]:
            problems.append(f"stream {index} ({row['ending']}): take " + ("unreadable" if row["take"] is None
                                                                          else f"leaves {row['take']} notes on"))
        expected = documented[row["ending"]]
        if expected is not None and row["code"] != expected:
            problems.append(f"stream {index} ({row['ending']}): exit {row['code']}, documented {expected}")
    return problems


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=40)
    parser.add_argument("--busy", type=int, default=2, help="Busy loops beside the streams (one per core).")
    parser.add_argument("--endings", nargs="+", choices=[ending for ending, _ in ENDINGS],
                        help="Only these endings, in turn [default: all].")
    args = parser.parse_args(argv)
    with private_jack_server("stoploop", PERIOD_FRAMES), tempfile.TemporaryDirectory(prefix="cadenza-stoploop-") as folder:
        results = run(args.streams, args.busy, Path(folder), args.endings)
    for ending, _ in ENDINGS:
        rows = [row for row in results if row["ending"] == ending]
        if rows:
            print(f"{ending:<8} {len(rows):>3} stops  notes left at the listener {sum(r['left'] for r in rows):>3}  "
                  f"in the takes {sum(r['take'] or 0 for r in rows):>3}  exit codes {sorted({r['code'] for r in rows})}")
    problems = failures(results)
    print(f"stop loop, {args.streams} streams beside {args.busy} busy loops: " + ("; ".join(problems) or "passed"))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
