"""The ``modellock`` command: a thin layer over the Python API (the commands live in ``modellock.commands``).

Bad input ends with one ``error: ...`` line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from .commands import load_commands
from .errors import ModelLockError

app = load_commands()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line and exit code 2; Ctrl-C exits 130."""
    try:
        rv = app(args=argv, standalone_mode=False)  # returns the exit code of a typer.Exit
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except ModelLockError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted: rerun the same command to resume", err=True)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except SystemExit:
        raise
    except Exception as e:  # click usage errors come through here with standalone_mode=False
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(130)
        raise


if __name__ == "__main__":
    main()
