"""The checks of user-given settings: what passes, and the one line that names what does not."""

from __future__ import annotations

import dataclasses

import pytest

from flowcore.validate import check_int, check_ints, check_number, reject_unknown


@pytest.mark.parametrize("value, minimum, maximum, message", [
    (0, 1, None, "n must be a positive integer, got 0"),
    (-1, 0, None, "n must be a non-negative integer, got -1"),
    (1, 2, None, "n must be an integer >= 2, got 1"),
    (True, 1, None, "n must be a positive integer, got True"),
    (2.0, 1, None, "n must be a positive integer, got 2.0"),
    (10, 0, 9, r"n must be an integer in \[0, 9\], got 10"),
    (-1, 0, 9, r"n must be an integer in \[0, 9\], got -1"),
    ("3", 0, 9, r"n must be an integer in \[0, 9\], got '3'"),
])
def test_check_int_refuses_with_one_line_naming_the_setting(value, minimum, maximum, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_int("n", value, minimum, maximum)


@pytest.mark.parametrize("value, minimum, maximum",
                         [(1, 1, None), (0, 0, None), (0, 0, 9), (9, 0, 9), (10**12, 1, None)])
def test_check_int_returns_what_it_accepts(value, minimum, maximum):
    assert check_int("n", value, minimum, maximum) == value


def test_check_ints_names_the_first_bad_field():
    @dataclasses.dataclass
    class Config:
        hidden: int = 8
        layers: int = 0

    check_ints(Config(), ("hidden",))
    with pytest.raises(ValueError, match="^layers must be a positive integer, got 0$"):
        check_ints(Config(), ("hidden", "layers"))


@pytest.mark.parametrize("value, minimum, strict, message", [
    (-1.0, 0.0, False, "x must be a non-negative number, got -1.0"),
    (0.0, 0.0, True, "x must be a positive number, got 0.0"),
    (float("nan"), 0.0, False, "x must be a non-negative number, got nan"),
    (float("inf"), 0.0, False, "x must be a non-negative number, got inf"),
    (True, 0.0, False, "x must be a non-negative number, got True"),
    (0.5, 1.0, True, "x must be a number > 1.0, got 0.5"),
])
def test_check_number_refuses_with_one_line_naming_the_setting(value, minimum, strict, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        check_number("x", value, minimum, strict)


def test_check_number_accepts_finite_numbers_from_the_minimum_and_returns_a_float():
    assert check_number("x", 0, 0.0) == 0.0 and isinstance(check_number("x", 3, 0.0), float)


def test_reject_unknown_lists_the_unknown_and_the_valid_keys_sorted():
    reject_unknown({"a": 1}, {"a", "b"}, "option(s)")
    with pytest.raises(ValueError, match="^unknown option\\(s\\) for m: y, z; valid: a, b$"):
        reject_unknown(["z", "a", "y"], ["b", "a"], "option(s) for m")
