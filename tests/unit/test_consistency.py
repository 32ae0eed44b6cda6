"""Consistency tokens (services.consistency): text form, bounds, merging."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.consistency import MAX_OFFSET, BadToken, Token, from_acks, merge, parse

views = st.sampled_from([None, "main", "k1", "rebuild-2026_12"])
positions = st.dictionaries(st.integers(0, 4095), st.integers(0, MAX_OFFSET), max_size=40)
tokens = st.builds(Token, positions, views)


@given(tokens)
def test_a_token_reads_back_from_its_text(token: Token) -> None:
    text = str(token)
    assert parse(text) == token
    assert text.isascii() and text.isprintable() and " " not in text


@given(st.lists(positions, min_size=1, max_size=5), views)
def test_merging_takes_each_partitions_highest_offset_in_any_order(
    many: list[dict[int, int]], view: str | None
) -> None:
    merged = merge(Token(p, view) for p in many)
    assert merge(Token(p, view) for p in reversed(many)) == merged
    assert merge([merged, *(Token(p) for p in many)]) == merged  # idempotent, producers' too
    for p in many:
        assert Token(p).behind(merged.positions) == {}  # the merge covers each of them
    assert merged.view == view


def test_tokens_of_two_views_do_not_merge() -> None:
    with pytest.raises(BadToken, match="different views"):
        merge([Token({0: 1}, "main"), Token({0: 2}, "k1")])


def test_a_producer_token_names_the_next_offset_after_each_acknowledged_record() -> None:
    token = from_acks([(0, 41), (2, 7), (0, 12)])
    assert token == Token({0: 42, 2: 8})
    assert token.behind({0: 42, 2: 7}) == {2: 8}
    assert token.behind({0: 42, 2: 8, 5: 3}) == {}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "tv1",
        "tv2.main.0:1",
        "tv1.Main.0:1",  # not a view name
        "tv1.main.0:1,0:2",  # a partition twice
        "tv1.main.0:-1",
        "tv1.main.4096:1",
        f"tv1.main.0:{2**63}",
        "tv1.main.0:1,",
        "tv1.main.0",
        "tv1.main.x:1",
        "tv1.-.0:1" + ",1:1" * 20_000,
    ],
)
def test_a_malformed_token_is_refused(text: str) -> None:
    with pytest.raises(BadToken):
        parse(text)


def test_an_empty_token_covers_nothing_and_is_valid() -> None:
    assert parse("tv1.-.") == Token()
    assert Token().behind({}) == {}
