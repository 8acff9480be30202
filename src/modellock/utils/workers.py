"""Data-loader worker processes that leave Ctrl-C to the main process.

A Ctrl-C in a terminal sends SIGINT to the whole process group: the main process *and* every data-loader worker.
A worker that dies of it first makes the main process fail with torch's ``DataLoader worker (pid X) exited
unexpectedly`` (a RuntimeError, exit code 1) or print the worker's traceback, depending on who gets there first.
``quiet_workers(num_workers)`` gives the DataLoader options that close that race: each worker is forked with
SIGINT blocked (so there is no moment at which it can die of one) and ignores it from its first line of Python on;
the main process alone turns the Ctrl-C into one ``interrupted`` line and exit code 130, and shuts the workers down.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import signal
import sys
import threading

_CAN_BLOCK = hasattr(signal, "pthread_sigmask") and "fork" in multiprocessing.get_all_start_methods()


def ignore_sigint(worker_id: int = 0) -> None:
    """Worker start (``worker_init_fn``): SIGINT is the main process's to handle. And a connection that the main
    process drops as it stops (a tensor being handed over through ``multiprocessing.resource_sharer``, whose
    thread reports errors through ``sys.excepthook``) ends quietly: the worker's own errors reach the main process
    through torch, not through this process's stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous = sys.excepthook

    def quiet_when_dropped(exc_type, exc, tb) -> None:
        if not issubclass(exc_type, (ConnectionError, EOFError)):
            previous(exc_type, exc, tb)

    sys.excepthook = quiet_when_dropped


if _CAN_BLOCK:
    class _QuietForkProcess(multiprocessing.context.ForkProcess):
        """A forked process that starts with SIGINT blocked: a Ctrl-C at any moment of its start-up passes it by.

        Meanwhile the parent only notes a Ctrl-C, and raises it once the child is started: raised during the
        fork, it would land in an ``os.register_at_fork`` callback (logging's), where Python prints and drops it.
        """

        def start(self) -> None:
            noted = []
            in_main = threading.current_thread() is threading.main_thread()
            handler = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum)) if in_main else None
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                super().start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
                if in_main and handler is not None:
                    signal.signal(signal.SIGINT, handler)
                    if noted:
                        signal.raise_signal(signal.SIGINT)  # now, to the handler that was in place

    class QuietForkContext(multiprocessing.context.ForkContext):
        """The fork start method, with processes that do not receive SIGINT."""

        Process = _QuietForkProcess


def quiet_workers(num_workers: int) -> dict:
    """DataLoader keyword arguments for ``num_workers`` workers that never die of a Ctrl-C (none for 0 workers)."""
    if num_workers <= 0:
        return {}
    options = {"worker_init_fn": ignore_sigint}
    if _CAN_BLOCK:
        options["multiprocessing_context"] = QuietForkContext()
    return options
