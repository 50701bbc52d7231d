"""Object-uri spelling and tenant grants (lrrt/vetting/objects.py): text only, no store."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from lrrt.problems import DatasetInvalid
from lrrt.settings import Settings
from lrrt.vetting.objects import check_granted, column_groups, format_of, parse_object_uri, parse_prefixes

GRANTS = "team-a=s3://ml-data/team-a/;team-b=s3://ml-data/team-b/;*=s3://public-sets/;team-a=gs://g-bucket/a/"


def test_grants_by_tenant_and_star() -> None:
    assert check_granted("s3://ml-data/team-a/x/y.parquet", "team-a", GRANTS).key == "team-a/x/y.parquet"
    assert check_granted("gs://g-bucket/a/imgs/", "team-a", GRANTS).is_prefix
    for tenant in ("team-a", "team-b", "local", "anyone"):  # '*' is every tenant, the standalone's 'local' too
        check_granted("s3://public-sets/mnist.npz", tenant, GRANTS)
    for uri, tenant in (("s3://ml-data/team-b/x.npz", "team-a"), ("s3://ml-data/team-ab/x.npz", "team-a"),
                        ("s3://ml-data/x.npz", "team-a"), ("gs://ml-data/team-a/x.npz", "team-a"),
                        ("s3://g-bucket/a/x.npz", "team-a"), ("s3://ml-data/team-a/x.npz", "local")):
        with pytest.raises(DatasetInvalid, match="not under a prefix your tenant may read"):
            check_granted(uri, tenant, GRANTS)
    with pytest.raises(DatasetInvalid, match=r"none \(the operator sets LRRT_DATA_PREFIXES\)"):
        check_granted("s3://public-sets/x.npz", "t", "")


@pytest.mark.parametrize("bad", ["team-a", "=s3://b/", "t=s3://bucket/no-slash", "t=http://x/", "t=s3://ml-data/a/../b/"])
def test_malformed_grants_stop_startup(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_prefixes(bad)
    with pytest.raises(ValidationError):
        Settings(data_prefixes=bad)


@given(st.lists(st.sampled_from(list("ab./%:?#*\\\x00") + ["..", "//", "s3://", "%2e"]), max_size=12).map("".join))
def test_any_granted_key_stays_textually_under_its_prefix(suffix: str) -> None:
    """Whatever follows the prefix, a uri that passes is a plain key below it: no segment climbs out."""
    uri = "s3://ml-data/team-a/" + suffix
    try:
        parsed = check_granted(uri, "team-a", GRANTS)
    except DatasetInvalid:
        return
    assert parsed.key.startswith("team-a/")
    assert not {"..", ".", ""} & set(parsed.key.split("/")[:-1])
    assert not set("%:?#*\\\x00") & set(parsed.key)


def test_formats_and_columns() -> None:
    assert format_of("s3://b/x/t.PARQUET", None) == "parquet"
    assert format_of("s3://b/x/", None) is None
    assert format_of("s3://b/x/data.bin", "npz") == "npz"
    with pytest.raises(DatasetInvalid, match="cannot tell the format"):
        format_of("s3://b/x/data.bin", None)
    assert column_groups({"x_a": ["f1", "f2"], "x_b": "vec", "y": "label"}) == {
        "x": {"a": ["f1", "f2"], "b": "vec"}, "y": {None: "label"}}
    with pytest.raises(DatasetInvalid, match="needs 'y'"):
        column_groups({"x": "f"})
    with pytest.raises(DatasetInvalid, match="non-empty list"):
        column_groups({"x": [], "y": "l"})
    with pytest.raises(DatasetInvalid, match="'z'"):
        column_groups({"x": "f", "y": "l", "z": "q"})
    assert parse_object_uri("s3://b12/k").path == "b12/k"
