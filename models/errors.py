"""The one error type users see: a one-line message and exit code 2."""

import click


class CadenzaError(click.ClickException):
    """Bad input or a missing resource: shown as one line, exits with code 2."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"cadenza: error: {self.format_message()}", err=True, file=file)
