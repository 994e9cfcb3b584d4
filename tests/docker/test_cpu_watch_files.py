"""Where the host reads a container's CPU time, on cgroup v1 and v2 layouts (no engine)."""

from __future__ import annotations

from pathlib import Path

from rlmbox.sandboxes.docker.cpu_watch import cpu_seconds_used, usage_file_of


def test_v1_reads_cpuacct_usage_in_nanoseconds(tmp_path: Path) -> None:
    usage = tmp_path / "cpu,cpuacct" / "docker" / "abc" / "cpuacct.usage"
    usage.parent.mkdir(parents=True)
    usage.write_text("2500000000\n")
    lines = ["4:memory:/docker/abc", "2:cpu,cpuacct:/docker/abc", "0::/docker/abc"]
    assert usage_file_of(lines, tmp_path) == usage
    assert cpu_seconds_used(usage) == 2.5


def test_v2_reads_usage_usec_from_cpu_stat(tmp_path: Path) -> None:
    stat = tmp_path / "system.slice" / "docker-abc.scope" / "cpu.stat"
    stat.parent.mkdir(parents=True)
    stat.write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert usage_file_of(["0::/system.slice/docker-abc.scope"], tmp_path) == stat
    assert cpu_seconds_used(stat) == 1.5


def test_no_cgroup_file_and_a_removed_cgroup_read_as_none(tmp_path: Path) -> None:
    assert usage_file_of(["0::/gone"], tmp_path) is None
    assert cpu_seconds_used(tmp_path / "gone" / "cpu.stat") is None
