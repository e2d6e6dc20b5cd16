"""Terminal keys (a surface) and the status line they show."""

from __future__ import annotations

import sys
import threading

from streamer.controls import Controls

KEY_HELP = "keys: +/- temperature  [/] instrument  </> tempo  d/D density  k/K key  space pause  q quit"


class TerminalKeys:
    """Single keys from a terminal, read on their own thread; restores the terminal on close."""

    def __init__(self, controls: Controls, instrument_name, typical_density: float = 8.0):
        import termios
        import tty

        self.controls = controls
        self.instrument_name = instrument_name
        self.typical_density = typical_density
        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        self._termios = termios
        self._thread = threading.Thread(target=self._run, name="cadenza-keys", daemon=True)
        self._thread.start()

    def start(self) -> None:
        """Reading keys since it opened (a surface's start, for the session)."""

    @staticmethod
    def available() -> bool:
        try:
            import termios  # noqa: F401

            return sys.stdin.isatty()
        except ImportError:
            return False

    def _run(self) -> None:
        import select

        while not self.controls.stop.is_set():
            ready, _, _ = select.select([sys.stdin], [], [], 0.1)
            if ready:
                self.handle(sys.stdin.read(1))

    def handle(self, key: str) -> None:
        controls = self.controls
        actions = {
            "+": lambda: controls.set_temperature(controls.temperature + 0.1),
            "=": lambda: controls.set_temperature(controls.temperature + 0.1),
            "-": lambda: controls.set_temperature(controls.temperature - 0.1),
            "]": lambda: controls.set_program(controls.program + 1),
            "[": lambda: controls.set_program(controls.program - 1),
            ">": lambda: controls.set_tempo_scale(controls.tempo_scale * 1.1),
            "<": lambda: controls.set_tempo_scale(controls.tempo_scale / 1.1),
            "d": lambda: controls.scale_density(1 / 1.25, self.typical_density),
            "D": lambda: controls.scale_density(1.25, self.typical_density),
            "k": lambda: controls.step_key(1),
            "K": lambda: controls.step_key(-1),
            " ": lambda: setattr(controls, "paused", not controls.paused),
            "q": controls.stop.set,
        }
        if key in actions:
            actions[key]()

    def close(self) -> None:
        self.controls.stop.set()
        self._thread.join(timeout=1)
        self._termios.tcsetattr(self._fd, self._termios.TCSADRAIN, self._saved)


def status_line(controls: Controls, notes_played: int, instrument_name) -> str:
    state = "paused" if controls.paused else "playing"
    density = f"{controls.density:.1f}/s" if isinstance(controls.density, float) else (controls.density or "free")
    return (f"\r{state}: T={controls.temperature:.2f}  {instrument_name(controls.program)} ({controls.program})  "
            f"tempo x{controls.tempo_scale:.2f}  density {density}  key {controls.key or 'free'}  notes {notes_played}   ")
