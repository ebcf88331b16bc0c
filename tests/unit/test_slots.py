from __future__ import annotations

import pytest

from drophost.errors import InvalidSlotError, ValidationError
from drophost.names import is_valid_slot, parse_ttl, slot_from_filename, validate_slot

DAY = 86400


@pytest.mark.parametrize(
    "name",
    ["a", "0", "a-b", "a--b", "9lives", "x" * 63, "a" + "-" * 61 + "b", "v2-preview"],
)
def test_valid_slot_names(name: str) -> None:
    assert is_valid_slot(name)
    assert validate_slot(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-",
        "-a",
        "a-",
        "x" * 64,
        "A",
        "aB",
        "a_b",
        "a.b",
        "a b",
        "a/b",
        "..",
        "a\n",
        "\na",
        "a\x00",
        "caf\u00e9",
        "\uff41",  # fullwidth a
        "\u0661",  # Arabic-Indic digit one
        "a;",
        "a}",
        "$host",
        "a'b",
    ],
)
def test_invalid_slot_names(name: str) -> None:
    assert not is_valid_slot(name)
    with pytest.raises(InvalidSlotError) as caught:
        validate_slot(name)
    assert caught.value.status_code == 422
    assert caught.value.message.isprintable()


@pytest.mark.parametrize("name", ["default", "include", "hostnames", "volatile"])
def test_the_words_of_nginxs_map_block_are_reserved(name: str) -> None:
    assert not is_valid_slot(name)
    with pytest.raises(InvalidSlotError) as caught:
        validate_slot(name)
    assert caught.value.status_code == 422 and caught.value.details == {"field": "slot"}
    assert caught.value.message.startswith(f'"{name}" is reserved')


@pytest.mark.parametrize("name", ["defaults", "include-me", "my-default", "volatile2"])
def test_names_that_only_contain_a_reserved_word_are_valid(name: str) -> None:
    assert validate_slot(name) == name


def test_an_invalid_slot_name_is_shown_safely_and_briefly() -> None:
    with pytest.raises(InvalidSlotError) as caught:
        validate_slot("evil\nname" + "x" * 500)
    assert "\n" not in caught.value.message and len(caught.value.message) < 250


@pytest.mark.parametrize(
    ("filename", "slot"),
    [
        ("site.zip", "site"),
        ("My Site v2.zip", "my-site-v2"),
        ("SITE.ZIP", "site"),
        ("site", "site"),
        ("site.tar.gz", "site-tar-gz"),
        ("C:\\Users\\me\\Desktop\\Portfolio.zip", "portfolio"),
        ("../../etc/passwd.zip", "passwd"),
        ("Caf\u00e9 & Cr\u00e8me.zip", "cafe-creme"),
        ("__init__.zip", "init"),
        ("a" * 62 + "-b" + "c" * 10 + ".zip", "a" * 62),
        ("x" * 100 + ".zip", "x" * 63),
    ],
)
def test_slot_from_filename(filename: str, slot: str) -> None:
    assert slot_from_filename(filename) == slot
    assert is_valid_slot(slot)


@pytest.mark.parametrize("filename", ["", ".zip", "!!!.zip", "\u65e5\u672c.zip", "---", "dir/"])
def test_no_slot_from_a_filename_without_letters_or_digits(filename: str) -> None:
    with pytest.raises(InvalidSlotError, match="pass a slot field"):
        slot_from_filename(filename)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("1", 1),
        ("3600", 3600),
        (90, 90),
        ("45s", 45),
        ("90m", 5400),
        ("2h", 7200),
        (" 2H ", 7200),
        ("7d", 7 * DAY),
        ("1w", 7 * DAY),
        ("365d", 365 * DAY),
    ],
)
def test_parse_ttl(value: str | int | None, seconds: int | None) -> None:
    assert parse_ttl(value, maximum=365 * DAY) == seconds


@pytest.mark.parametrize(
    "value",
    ["0", "0s", "-5", "1.5h", "10y", "h", "5 m", "1e3", "0x10", "9999999999", "366d", "\u0663\u0660", "3\n0", "1h2m"],
)
def test_bad_ttls_are_refused(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_ttl(value, maximum=365 * DAY)
    assert caught.value.status_code == 422
    assert caught.value.details == {"field": "ttl"}


def test_ttl_maximum_is_inclusive() -> None:
    assert parse_ttl("1h", maximum=3600) == 3600
    with pytest.raises(ValidationError, match="between 1 second and 3600 seconds"):
        parse_ttl("3601", maximum=3600)
