"""The ``modellock`` command: a thin layer over the Python API (the commands live in ``modellock.commands``).

Bad input ends with one ``error: ...`` line on stderr and exit code 2, never a traceback: the library's
own errors (``ModelLockError``) and every usage error of the command line (unknown command or option,
missing option, a value of the wrong type, no command at all). Ctrl-C ends with one line and exit 130.
"""

from __future__ import annotations

import _thread
import os
import re
import signal
import sys
import threading
import warnings
from pathlib import Path

import typer
from tqdm import tqdm

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


def _close_bars() -> None:
    """End every progress bar still open (an error or Ctrl-C mid-stage), so the last line starts a line of its own."""
    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def _fail(message: str, code: int = 2) -> None:
    _close_bars()
    print(f"error: {one_line(_without_worker_traceback(message))}", file=sys.stderr)
    sys.exit(code)


_TRACEBACK_LAST_LINE = re.compile(r"^[A-Za-z_][\w.]*: (.*)$")


def _without_worker_traceback(message: str) -> str:
    """An error raised in a data-loader worker comes back from torch as ``Caught DataError in DataLoader worker
    process 0. Original Traceback ...``: only its own message, the traceback's last line, is for the user."""
    if "Original Traceback" not in message:
        return message
    last = [line for line in message.splitlines() if line.strip()][-1]
    found = _TRACEBACK_LAST_LINE.match(last)
    return found.group(1) if found else last


def _interrupted() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run is ending: a second Ctrl-C changes nothing
    _close_bars()
    print("interrupted: rerun the same command to resume (edit, lock and train continue where they stopped)",
          file=sys.stderr)
    sys.exit(130)


class _CtrlC:
    """Ctrl-C while a command runs: remembered, then raised as KeyboardInterrupt as Python does. Whatever it
    interrupts (and whatever error that causes on the way out) ends as the one ``interrupted`` line and exit 130;
    one that lands in a finaliser, where Python would print it and carry on, is raised again in the main flow,
    and the finalisers of what it interrupted stay quiet."""

    def __init__(self):
        self.seen = False
        self._previous_handler = self._previous_hook = None
        self._timers: list[threading.Timer] = []

    def __enter__(self):
        # a run started with SIGINT ignored (a background job, nohup) keeps ignoring it, as Python does
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not \
                signal.SIG_IGN:
            self._previous_handler = signal.signal(signal.SIGINT, self._handler)
        self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
        sys.unraisablehook = self._previous_hook

    def _handler(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def _unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # swallowed in a finaliser or a fork callback: raise it again in a moment, from outside, where the
            # main flow can end the run (raised from here, it would be swallowed again)
            timer = threading.Timer(0.05, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
            self._timers.append(timer)
        elif not self.seen:  # after a Ctrl-C, a finaliser of what it interrupted (half-made) has nothing to say
            self._previous_hook(unraisable)


def _check_launch() -> None:
    """``accelerate launch --cpu --num_processes N`` starts one process, not N, on a machine without MPI: say so
    before any work rather than run alone. accelerate's simple launcher sets ACCELERATE_USE_CPU, and MASTER_ADDR
    only when more than one process was asked for; a process group started by torchrun, accelerate's multi-GPU
    launcher or MPI has its size in the environment."""
    env = os.environ
    sizes = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
    if "ACCELERATE_USE_CPU" not in env or "MASTER_ADDR" not in env or any(k in env for k in sizes):
        return
    asked = _launcher_processes() or "several"
    _fail(f"accelerate launch asked for {asked} processes but started one: with --cpu it starts several only "
          f"through MPI; use `torchrun --nproc-per-node {asked if asked != 'several' else 'N'} -m modellock.cli "
          "...`, or `accelerate launch --multi_gpu --num_processes N ...` (without GPUs it runs on gloo)")


def _launcher_processes() -> int | None:
    """``--num_processes N`` of the parent ``accelerate launch`` command line (Linux), or None."""
    try:
        words = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    for i, word in enumerate(words):
        name, _, value = word.partition("=")
        if name in ("--num_processes", "--num-processes"):
            value = value or (words[i + 1] if i + 1 < len(words) else "")
            return int(value) if value.isdigit() else None
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user and usage errors become one line and exit code 2; Ctrl-C exits 130."""
    warnings.showwarning = _show_warning
    _check_launch()
    with _CtrlC() as ctrl_c:
        try:
            rv = app(args=argv, prog_name=PROG, standalone_mode=False)  # returns the exit code of a typer.Exit
        except ModelLockError as e:
            if ctrl_c.seen:
                _interrupted()
            _fail(str(e))
        except USAGE_ERRORS as e:
            _fail(_usage_message(e, sys.argv[1:] if argv is None else list(argv)))
        except (KeyboardInterrupt, *ABORTS):
            _interrupted()
        except OSError as e:  # the file system refused (not a folder, no permission, disk full): not a bug to trace
            if ctrl_c.seen:
                _interrupted()
            _fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else f"{type(e).__name__}: {e}", code=1)
        except typer.Exit as e:
            sys.exit(e.exit_code)
        except Exception:
            if ctrl_c.seen:  # e.g. a worker process that Ctrl-C ended first: the run was interrupted, not broken
                _interrupted()
            raise
        finally:
            warnings.showwarning = _python_show_warning
    if rv == 130 or ctrl_c.seen:  # typer turns a KeyboardInterrupt inside a command into Exit(130)
        _interrupted()
    if isinstance(rv, int) and rv:
        sys.exit(rv)


if __name__ == "__main__":
    main()
