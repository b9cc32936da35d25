"""The one name rule (nnchain/names.py), the same wherever a name is checked."""

from __future__ import annotations

import pytest

from nnchain.errors import SpecError
from nnchain.names import check_name, is_valid_name
from nnchain.sweep import parse_sweep_spec
from nnchain.tracking import store

GOOD = ["xor-grid", "xor-grid-2", "a", "Run_1.5", "9lives", "x" * 100]
BAD = ["a b", " lead", "-dash", ".hidden", "_under", "..", "a..b", "a/b", "a\\b", "",
       "x" * 101, "tab\tname", "é", None, 3, "evil\n", "evil\r\n", "\nevil", "ev\nil",
       "evil\x00", "x" * 100 + "\n"]


@pytest.mark.parametrize("name", GOOD)
def test_good_names(name):
    assert is_valid_name(name) and check_name("name", name) == name
    assert parse_sweep_spec({"name": name, "data": {"name": "xor"}}).name == name


@pytest.mark.parametrize("name", BAD, ids=repr)
def test_bad_names_are_one_spec_error_naming_the_field(name):
    assert not is_valid_name(name)
    with pytest.raises(SpecError) as error:
        check_name("--name", name)
    assert error.value.field == "--name" and "must be 1-100 letters" in error.value.message
    with pytest.raises(SpecError) as spec_error:
        parse_sweep_spec({"name": name, "data": {"name": "xor"}})
    assert spec_error.value.field == "name"


def test_the_store_re_exports_the_same_rule():
    assert store.check_name is check_name


def test_a_huge_name_is_shown_bounded():
    with pytest.raises(SpecError) as caught:
        check_name("name", "x y" * 1_000_000)
    assert len(str(caught.value)) < 400 and "..." in str(caught.value)
