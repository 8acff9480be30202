"""The process group of a run launched with ``accelerate launch`` or ``torchrun``, through accelerate's ``PartialState``.

A plain ``modellock ...`` is rank 0 of 1 and every helper here is then a no-op. Launched with several
processes, the stages split their work with ``shard`` (contiguous blocks by position, the same split on
every rank), meet at ``barrier`` and exchange small results with ``gather``; only the main process
writes shared files.

On a machine without GPUs accelerate forms a process group only when told to use the CPU; ``state``
tells it so, so that ``torchrun --nproc-per-node 2 -m modellock.cli ...`` runs on gloo there.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from accelerate import PartialState
from accelerate.utils import gather_object, parse_flag_from_env


def state():
    """accelerate's ``PartialState`` for this process (the process group is set up on first use)."""
    return PartialState(cpu=use_cpu() or parse_flag_from_env("ACCELERATE_USE_CPU"))


def use_cpu() -> bool:
    """True when no GPU is present: accelerate must then be told to use the CPU (gloo)."""
    return not torch.cuda.is_available()


def num_processes() -> int:
    return state().num_processes


def rank() -> int:
    return state().process_index


def is_main() -> bool:
    return state().is_main_process


def barrier() -> None:
    """Wait until every process gets here (no-op in one process)."""
    state().wait_for_everyone()


def gather(obj: Any) -> list:
    """``obj`` of every process, in rank order (``[obj]`` in one process); for small picklable objects."""
    return gather_object([obj])


def shard(items: Sequence) -> list:
    """This process's contiguous block of ``items`` (all of them in one process); blocks differ by at most one."""
    with state().split_between_processes(list(items)) as mine:
        return list(mine)


def device() -> str | None:
    """This process's device when launched with several (``cuda:<local rank>``); None in one process,
    where each stage picks its own default."""
    s = state()
    return str(s.device) if s.num_processes > 1 else None
