"""The `cadenza` command: one click group; each side adds its own subcommands."""

import _thread
import os
import signal
import sys
import threading


_start_up_stop: int | None = None


def _stopped_during_start_up(signal_number, frame):
    """Until a command sets its own handling, a stop signal is a quiet exit, not a traceback."""
    global _start_up_stop
    if _start_up_stop is None:
        sys.stderr.write(f"\ncadenza: stopped by {signal.Signals(signal_number).name}\n")
    _start_up_stop = signal_number
    sys.exit(128 + signal_number)


def _stop_swallowed(unraisable) -> None:
    """A signal that lands while Python runs a callback it cannot raise from (a weakref callback of
    the import machinery) has its SystemExit swallowed, and the command would play on as if never
    stopped: deliver the signal again from another thread, so it lands in ordinary code, where the
    start-up exit works or a command's own handler (stream's stop event) takes it."""
    if isinstance(unraisable.exc_value, SystemExit) and _start_up_stop is not None:
        threading.Timer(0.005, _thread.interrupt_main, (_start_up_stop,)).start()
        return
    sys.__unraisablehook__(unraisable)


sys.unraisablehook = _stop_swallowed
for _signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(_signal, _stopped_during_start_up)

# TensorFlow's C++ start-up chatter would bury cadenza's own one-line messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Probing for a JACK server (FluidSynth's audio driver, a JACK MIDI port) must not start one:
# that took about 6 s, printed jackd's banner and left its semaphores in /dev/shm.
os.environ.setdefault("JACK_NO_START_SERVER", "1")

import click  # noqa: E402

from streamer.cli import register as register_streamer  # noqa: E402
from training.cli import register as register_training  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cadenza")
def main() -> None:
    """cadenza: a real-time neural piano improviser trained on MAESTRO."""


register_training(main)
register_streamer(main)

TENSORFLOW_MISSING = ("cadenza: error: this command needs TensorFlow, which this install does not have: "
                      "pip install 'cadenza[cpu]' (or 'cadenza[gpu]' on a machine with an NVIDIA GPU)")


def run() -> None:
    """The console entry point: `main`, with a missing TensorFlow said in one line."""
    try:
        main()
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in ("tensorflow", "keras", "tf_keras"):
            raise
        click.echo(TENSORFLOW_MISSING, err=True)
        sys.exit(2)


if __name__ == "__main__":
    run()
