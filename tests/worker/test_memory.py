"""The worker's memory guard (worker/memory.py), on this process's real resident size: no Keras needed."""

from __future__ import annotations

from worker.memory import MemoryGuard, rss_bytes

MIB = 1024 ** 2


def test_guard_measures_what_a_run_adds_and_says_what_to_change() -> None:
    guard = MemoryGuard(limit_bytes=512 * MIB, baseline_bytes=900 * MIB)
    assert guard.ceiling_bytes == 1412 * MIB
    assert guard.exceeded(1412 * MIB) is None  # at the limit still fits
    over = guard.exceeded(1500 * MIB)
    assert over is not None
    problem = over.problem()
    assert problem["type"] == "urn:lrrt:problem:resource-exhausted" and problem["status"] == 507
    assert (problem["limit_bytes"], problem["used_bytes"], problem["rss_bytes"]) == (512 * MIB, 600 * MIB, 1500 * MIB)
    assert "by 600 MiB" in problem["detail"] and "limit of 512 MiB" in problem["detail"]  # the limit and what the run used
    assert "LRRT_MEMORY_LIMIT_BYTES" in problem["detail"] and "batch_size" in problem["detail"]


def test_guard_sees_this_process_grow() -> None:
    guard = MemoryGuard.start(64 * MIB)
    assert guard is not None and guard.baseline_bytes == guard.ceiling_bytes - 64 * MIB
    assert guard.exceeded() is None
    ballast = b"\x01" * (128 * MIB)  # written, so resident (a zeroed bytearray may stay unbacked)
    over = guard.exceeded()
    assert over is not None and over.extensions["used_bytes"] >= 64 * MIB
    del ballast


def test_resident_size_is_read_from_proc() -> None:
    size = rss_bytes()
    assert size is not None and 16 * MIB < size < 64 * 1024 * MIB  # a Python process with pytest loaded


def test_limit_zero_turns_the_guard_off() -> None:
    assert MemoryGuard.start(0) is None
