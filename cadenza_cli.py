"""The `cadenza` command: one click group; each side adds its own subcommands."""

import os

# TensorFlow's C++ start-up chatter would bury cadenza's own one-line messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from streamer.cli import register as register_streamer  # noqa: E402
from training.cli import register as register_training  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cadenza")
def main() -> None:
    """cadenza: a real-time neural piano improviser trained on MAESTRO."""


register_training(main)
register_streamer(main)

if __name__ == "__main__":
    main()
