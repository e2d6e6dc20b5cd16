"""The one error type users see: a one-line message and exit code 2."""

import importlib.util

import click


class CadenzaError(click.ClickException):
    """Bad input or a missing resource: shown as one line, exits with code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"cadenza: error: {self.format_message()}", err=True, file=file)


def require_tensorflow(what: str) -> None:
    """Streaming and rendering need only LiteRT; training, export and evaluation need TensorFlow."""
    if importlib.util.find_spec("tensorflow") is None:
        raise CadenzaError(f"{what} needs TensorFlow, which this install does not have: "
                           "pip install 'cadenza[cpu]' (or 'cadenza[gpu]' on a machine with an NVIDIA GPU)")


def require_scikit_learn(what: str) -> None:
    """The style evaluation's classifier test needs scikit-learn (an extra, like TensorFlow)."""
    if importlib.util.find_spec("sklearn") is None:
        raise CadenzaError(f"{what} needs scikit-learn, which this install does not have: pip install 'cadenza[cpu]'")
