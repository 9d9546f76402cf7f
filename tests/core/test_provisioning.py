"""An instance's CPU follows its memory: the weight in proportion, the cap at Lambda's ratio,
at least one CPU and at most the node's."""

from __future__ import annotations

import pytest

from pratai.core.provisioning import Provisioning, host_cpus, provision
from pratai.drivers.cgroups import cfs_quota_us, v1_shares


@pytest.mark.parametrize(
    ("memory_mb", "weight"),
    [(128, 100), (256, 200), (1024, 800), (1769, 1382), (8192, 6400), (16, 12)],
)
def test_the_weight_is_proportional_to_memory_with_128_mb_the_default(
    memory_mb: int, weight: int
) -> None:
    assert provision(memory_mb).cpu_weight == weight


def test_the_weight_stays_within_cgroup_bounds() -> None:
    assert provision(1).cpu_weight == 1
    assert provision(100_000).cpu_weight == 10_000


def test_the_cap_is_one_cpu_per_1769_mb_but_never_below_one_cpu() -> None:
    # a small function still gets a whole CPU when the machine has one free
    assert provision(128, node_cpus=8).cpus_max == 1.0
    assert provision(1769, node_cpus=8).cpus_max == 1.0
    assert provision(3538, node_cpus=8).cpus_max == 2.0
    assert provision(8192, node_cpus=8).cpus_max == 4.63
    assert provision(8192).cpus_max == 4.63  # no node known: not bounded by one


def test_the_cap_is_never_above_the_nodes_cpus() -> None:
    assert provision(8192, node_cpus=2) == Provisioning(cpu_weight=6400, cpus_max=2.0)
    assert provision(128, node_cpus=1).cpus_max == 1.0


def test_cgroup_v1_values_keep_the_same_proportions() -> None:
    assert v1_shares(provision(128).cpu_weight) == 1024  # v1's default
    assert v1_shares(provision(1024).cpu_weight) == 8192
    assert v1_shares(1) == 10 and v1_shares(10_000) == 102_400  # within v1 2..262144
    assert cfs_quota_us(1.0) == 100_000 and cfs_quota_us(4.63) == 463_000


def test_host_cpus_counts_the_cpus_this_process_may_use() -> None:
    assert host_cpus() >= 1
