"""The worker's memory guard (worker/memory.py), on this process's real resident size: no Keras needed."""

from __future__ import annotations

from worker.memory import FIRST_STEP_BYTES, MemoryGuard, rss_bytes

MIB = 1024 ** 2


def test_guard_measures_what_a_run_adds_and_says_what_to_change() -> None:
    guard = MemoryGuard(limit_bytes=512 * MIB, baseline_bytes=900 * MIB)
    assert guard.ceiling_bytes == 1412 * MIB + FIRST_STEP_BYTES  # the backend's first step is allowed on top
    assert guard.exceeded(1412 * MIB + FIRST_STEP_BYTES) is None  # at the ceiling still fits
    rss = 1500 * MIB + FIRST_STEP_BYTES
    over = guard.exceeded(rss)
    assert over is not None
    problem = over.problem()
    assert problem["type"] == "urn:lrrt:problem:resource-exhausted" and problem["status"] == 507
    assert (problem["limit_bytes"], problem["used_bytes"], problem["rss_bytes"]) == (512 * MIB, rss - 900 * MIB, rss)
    assert "by 1,624 MiB" in problem["detail"] and "limit of 512 MiB" in problem["detail"]  # the limit and what the run used
    assert "1,024 MiB more is allowed" in problem["detail"]
    assert "LRRT_MEMORY_LIMIT_BYTES" in problem["detail"] and "batch_size" in problem["detail"]


def test_guard_sees_this_process_grow() -> None:
    guard = MemoryGuard.start(64 * MIB)
    assert guard is not None and guard.baseline_bytes == guard.ceiling_bytes - 64 * MIB - FIRST_STEP_BYTES
    assert guard.exceeded() is None
    ballast = b"\x01" * (64 * MIB + FIRST_STEP_BYTES + 64 * MIB)  # written, so resident (zeroes may stay unbacked)
    over = guard.exceeded()
    assert over is not None and over.extensions["used_bytes"] >= 64 * MIB + FIRST_STEP_BYTES
    del ballast


def test_resident_size_is_read_from_proc() -> None:
    size = rss_bytes()
    assert size is not None and 16 * MIB < size < 64 * 1024 * MIB  # a Python process with pytest loaded


def test_limit_zero_turns_the_guard_off() -> None:
    assert MemoryGuard.start(0) is None
