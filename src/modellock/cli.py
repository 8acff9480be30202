"""The ``modellock`` command: a thin layer over the Python API (the commands live in ``modellock.commands``).

Bad input ends with one ``error: ...`` line on stderr and exit code 2, never a traceback: the library's
own errors (``ModelLockError``) and every usage error of the command line (unknown command or option,
missing option, a value of the wrong type, no command at all). Ctrl-C ends with one line and exit 130.
"""

from __future__ import annotations

import sys
import warnings

import typer

from .commands import load_commands
from .errors import DataWarning, ModelLockError, one_line

app = load_commands()
PROG = "modellock"


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(usage errors, aborts) as the installed typer raises them.

    typer >= 0.16 raises the classes of its bundled click (``typer._click``), older ones those of
    ``click`` itself; both are collected, so either reaches ``main`` as a usage error.
    """
    usage, aborts = [], [typer.Abort]
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = __import__(module, fromlist=["ClickException"])
        except ImportError:
            continue
        usage.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            aborts.append(mod.Abort)
    return tuple(usage), tuple(aborts)


USAGE_ERRORS, ABORTS = _click_exception_types()


def _usage_message(e: Exception, argv: list[str]) -> str:
    """One line: what was wrong, and where to find the command's help."""
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # `modellock` alone (help is on stdout)
        return f"no command given (commands: {', '.join(ctx.command.list_commands(ctx))}); see `{PROG} --help`"
    text = " ".join(str(e.format_message()).split()).rstrip(".") if hasattr(e, "format_message") else str(e)
    if ctx is not None:
        command = ctx.info_name if ctx.parent is not None else None
    else:  # raised by the option parser, which has no context: the command is the first word
        command = next((a for a in argv if not a.startswith("-")), None)
    where = f"{PROG} {command}" if command in app_commands() else PROG
    return f"{text}; see `{where} --help`"


def app_commands() -> set[str]:
    return {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Data warnings as one ``warning: ...`` line; other warnings as Python shows them."""
    if issubclass(category, DataWarning):
        print(f"warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(code)


def _interrupted() -> None:
    print("interrupted: rerun the same command to resume (edit, lock and train continue where they stopped)",
          file=sys.stderr)
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user and usage errors become one line and exit code 2; Ctrl-C exits 130."""
    warnings.showwarning = _show_warning
    try:
        rv = app(args=argv, prog_name=PROG, standalone_mode=False)  # returns the exit code of a typer.Exit
    except ModelLockError as e:
        _fail(str(e))
    except USAGE_ERRORS as e:
        _fail(_usage_message(e, sys.argv[1:] if argv is None else list(argv)))
    except OSError as e:  # the file system refused (not a folder, no permission, disk full): not a bug to trace
        _fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else f"{type(e).__name__}: {e}", code=1)
    except (KeyboardInterrupt, *ABORTS):
        _interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    finally:
        warnings.showwarning = _python_show_warning
    if rv == 130:  # typer turns a KeyboardInterrupt inside a command into Exit(130)
        _interrupted()
    if isinstance(rv, int) and rv:
        sys.exit(rv)


if __name__ == "__main__":
    main()
