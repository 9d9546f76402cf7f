"""What an instance is given besides its memory, computed from its memory and the node's CPUs.

CPU follows memory, as on AWS Lambda, in two parts:

- ``cpu_weight``: the instance's share under contention, proportional to its memory, on the
  scale of cgroup v2's ``cpu.weight`` (1..10000, 100 the default): 128 MB is 100, 1024 MB is
  800. When instances compete for the CPUs, each gets CPU time in proportion to its weight; on
  a machine with CPU to spare any instance takes what is free.
- ``cpus_max``: a hard cap in CPUs, at Lambda's ratio of one CPU per 1769 MB, but never below
  one CPU and never above the node's CPUs. Lambda's ratio alone would hold a 128 MB function
  to 7 % of a CPU even on an idle machine: a self-hosted node has no other tenants' bills to
  protect, so a small function may use a whole CPU when it is free, and the weight alone
  divides the CPUs when it is not. Above 1769 MB the cap lets a function use more than one CPU
  (threads, processes), as its memory pays for.

`provision` is pure; `host_cpus` is what a node passes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MB_PER_CPU = 1769  # Lambda: 1769 MB is one vCPU
DEFAULT_WEIGHT_MB = 128  # the memory whose weight is the default, 100
WEIGHT_MIN, WEIGHT_DEFAULT, WEIGHT_MAX = 1, 100, 10_000  # cgroup v2 cpu.weight


@dataclass(frozen=True)
class Provisioning:
    cpu_weight: int  # share under contention, 1..10000 (100 = 128 MB)
    cpus_max: float  # at most this many CPUs' worth of time (2 decimals)


def provision(memory_mb: int, node_cpus: int | None = None) -> Provisioning:
    """The CPU of an instance with `memory_mb` of memory on a node with `node_cpus` CPUs
    (None: not known, so the cap is not bounded by it)."""
    weight = round(memory_mb * WEIGHT_DEFAULT / DEFAULT_WEIGHT_MB)
    cpus = max(1.0, memory_mb / MB_PER_CPU)
    if node_cpus is not None:
        cpus = min(cpus, float(max(1, node_cpus)))
    return Provisioning(
        cpu_weight=min(WEIGHT_MAX, max(WEIGHT_MIN, weight)),
        cpus_max=round(cpus, 2),
    )


def host_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a cpuset narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1
