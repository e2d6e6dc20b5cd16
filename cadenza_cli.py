"""The `cadenza` command: one click group; each side adds its own subcommands."""

import click

from streamer.cli import register as register_streamer
from training.cli import register as register_training


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cadenza")
def main() -> None:
    """cadenza: a real-time neural piano improviser trained on MAESTRO."""


register_training(main)
register_streamer(main)

if __name__ == "__main__":
    main()
