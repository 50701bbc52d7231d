"""Load, bounded: `bench/load.py`'s run against the reliability stack. Tens of concurrent clients submit
tiny sweeps under a handful of tenants (cap 8 each, so 429 + Retry-After is part of the run) while pollers
poll; every submission is accepted in the end, every job finishes, none is lost or corrupted.

The default run is sized for CI on 2 cores; the `slow` one is the soak (hundreds of submissions).
The figures in docs/reliability.md come from `python bench/load.py --spawn` (same code, own stack).
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.load import run_load

from .conftest import Stack
from .outcomes import assert_nothing_unfinished, report

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("submissions, clients, tenants", [
    pytest.param(48, 12, 4, id="48-from-12-clients"),
    pytest.param(240, 30, 8, id="240-from-30-clients", marks=pytest.mark.slow),
])
def test_load_all_accepted_or_429_and_all_finish(live: Stack, digits_mlp: dict[str, Any], submissions: int,
                                                 clients: int, tenants: int) -> None:
    names = [f"t{i}" for i in range(10, 10 + tenants)]
    result = run_load(live.api.url, [f"key-{t}" for t in names], submissions=submissions, clients=clients,
                      pollers=4, model=digits_mlp, timeout_s=900)
    report({"load": f"{submissions} submissions, {clients} clients, {tenants} tenants", **result})
    assert result["lost"] == 0 and result["accepted"] == submissions
    assert result["refused_without_retry_after"] == 0
    assert result["errors"] == 0 and result["corrupt"] == 0
    assert result["outcomes"] == {"succeeded": submissions}, result["outcomes"]
    assert_nothing_unfinished(live.store, names)
