from datetime import datetime, timezone

import pytest

from exporter.pipeline.buckets import (
    ObservedState,
    accumulate,
    counts_by_bucket,
    evaluate,
    latest_complete_bucket,
    zero_filled,
)
from exporter.vocabulary import DataPoint

H = 1800  # one half hour


def ts(hour: int, minute: int, second: int = 0) -> int:
    """Unix seconds, an int like every bucket start that parse_answer hands on."""
    return int(datetime(2026, 3, 1, hour, minute, second, tzinfo=timezone.utc).timestamp())


def point(start: float, count: int, *labels: str) -> DataPoint:
    return DataPoint(int(start), int(start) + H, count, tuple(labels))


@pytest.mark.parametrize(
    ("now", "delay", "expected"),
    [
        # docs/contract.md's example: 10:47 with a 30m delay reports the 09:30 bucket.
        (ts(10, 47), 1800, ts(9, 30)),
        # The 09:30 bucket ended at 10:00: exactly `delay` ago at 10:30 counts as complete.
        (ts(10, 30), 1800, ts(9, 30)),
        (ts(10, 29, 59), 1800, ts(9, 0)),
        (ts(10, 0), 0, ts(9, 30)),
        (ts(10, 0, 1), 0, ts(9, 30)),
        (ts(9, 59, 59), 0, ts(9, 0)),
        (ts(10, 47), 3600, ts(9, 0)),
        (ts(10, 47), 5400, ts(8, 30)),
        (ts(0, 10), 1800, ts(23, 0) - 86400),  # across midnight
    ],
)
def test_latest_complete_bucket(now: float, delay: float, expected: float) -> None:
    assert latest_complete_bucket(now, delay) == expected


def test_latest_complete_bucket_is_the_newest_that_qualifies() -> None:
    for delay in (0, 600, 1800, 5400):
        for second in range(0, 7200, 37):
            now = ts(10, 0) + second
            bucket = latest_complete_bucket(now, delay)
            assert bucket % H == 0
            assert bucket + H <= now - delay, "it ended at least `delay` ago"
            assert bucket + 2 * H > now - delay, "the next one has not"


def test_counts_by_bucket_groups_sums_duplicates_and_ignores_order() -> None:
    points = [
        point(ts(10, 0), 3, "MARKETING"),
        point(ts(9, 30), 1, "MARKETING"),
        point(ts(10, 0), 2, "MARKETING"),  # a duplicate label set in one bucket is summed
        point(ts(10, 0), 5, "SERVICE"),
    ]
    newest_first = counts_by_bucket(points, window_start=int(ts(0, 0)))
    oldest_first = counts_by_bucket(reversed(points), window_start=int(ts(0, 0)))
    assert newest_first == oldest_first == {
        ts(10, 0): {("MARKETING",): 5, ("SERVICE",): 5},
        ts(9, 30): {("MARKETING",): 1},
    }


def test_counts_by_bucket_drops_points_before_the_window() -> None:
    points = [point(ts(8, 30), 7, "A"), point(ts(9, 0), 1, "A")]
    assert counts_by_bucket(points, window_start=int(ts(9, 0))) == {ts(9, 0): {("A",): 1}}


def test_zero_filled() -> None:
    assert zero_filled({("A",): 2}, [("A",), ("B",)]) == {("A",): 2, ("B",): 0}
    assert zero_filled({}, [("A",)]) == {("A",): 0}
    assert zero_filled({("A",): 2}, []) == {("A",): 2}


class TestAccumulate:
    start = int(ts(4, 0))

    def test_counts_each_complete_bucket_once(self) -> None:
        buckets = {ts(9, 0): {("A",): 2}, ts(9, 30): {("A",): 3, ("B",): 1}}
        first = accumulate(ObservedState(), buckets, self.start, int(ts(9, 30)))
        assert first.totals == {("A",): 5, ("B",): 1}
        again = accumulate(first, buckets, self.start, int(ts(9, 30)))
        assert again.totals == first.totals

    def test_upward_revision_adds_its_difference(self) -> None:
        state = accumulate(ObservedState(), {ts(9, 0): {("A",): 2}}, self.start, int(ts(9, 0)))
        state = accumulate(state, {ts(9, 0): {("A",): 7}}, self.start, int(ts(9, 0)))
        assert state.totals == {("A",): 7}

    def test_downward_revision_never_decreases(self) -> None:
        state = accumulate(ObservedState(), {ts(9, 0): {("A",): 7}}, self.start, int(ts(9, 0)))
        state = accumulate(state, {ts(9, 0): {("A",): 4}}, self.start, int(ts(9, 0)))
        assert state.totals == {("A",): 7}
        # ... and a later climb back above the old high adds only the part above it.
        state = accumulate(state, {ts(9, 0): {("A",): 9}}, self.start, int(ts(9, 0)))
        assert state.totals == {("A",): 9}

    def test_provisional_buckets_are_not_counted_until_complete(self) -> None:
        buckets = {ts(9, 0): {("A",): 2}, ts(9, 30): {("A",): 40, ("NEW",): 5}}
        state = accumulate(ObservedState(), buckets, self.start, int(ts(9, 0)))
        # NEW was only seen in the open bucket: its series starts at 0, so that the first
        # conversations counted later are an increase Prometheus can see.
        assert state.totals == {("A",): 2, ("NEW",): 0}
        assert ts(9, 30) not in state.counted
        # Half an hour later 09:30 is complete, with its final count.
        state = accumulate(
            state, {ts(9, 30): {("A",): 45, ("NEW",): 6}}, self.start, int(ts(9, 30))
        )
        assert state.totals == {("A",): 47, ("NEW",): 6}

    def test_buckets_missed_while_polls_failed_are_caught_up(self) -> None:
        state = accumulate(ObservedState(), {ts(8, 0): {("A",): 1}}, self.start, int(ts(8, 0)))
        # Polls failed from 08:30 to 11:00; the next good poll re-reads the whole window.
        window = {
            ts(8, 0): {("A",): 1},
            ts(8, 30): {("A",): 2},
            ts(9, 0): {("A",): 3},
            ts(9, 30): {("A",): 4},
            ts(10, 0): {("A",): 5},
        }
        state = accumulate(state, window, self.start, int(ts(10, 0)))
        assert state.totals == {("A",): 15}

    def test_memory_older_than_the_window_is_dropped(self) -> None:
        state = accumulate(ObservedState(), {ts(5, 0): {("A",): 1}}, self.start, int(ts(5, 0)))
        state = accumulate(state, {ts(9, 0): {("A",): 1}}, int(ts(6, 0)), int(ts(9, 0)))
        assert set(state.counted) == {ts(9, 0)}
        assert state.totals == {("A",): 2}

    def test_a_clock_stepping_back_never_counts_a_forgotten_bucket_twice(self) -> None:
        state = accumulate(ObservedState(), {ts(5, 0): {("A",): 4}}, int(ts(5, 0)), int(ts(5, 0)))
        state = accumulate(state, {ts(9, 0): {("A",): 1}}, int(ts(6, 0)), int(ts(9, 0)))
        assert state.totals == {("A",): 5}
        # The wall clock jumps back two hours: the window reaches 05:00 again.
        state = accumulate(state, {ts(5, 0): {("A",): 4}, ts(9, 0): {("A",): 1}},
                           int(ts(4, 0)), int(ts(9, 0)))
        assert state.totals == {("A",): 5}

    def test_buckets_outside_the_window_are_ignored(self) -> None:
        state = accumulate(ObservedState(), {ts(3, 0): {("A",): 9}}, self.start, int(ts(9, 0)))
        assert state.totals == {}

    def test_label_sets_are_independent(self) -> None:
        state = accumulate(
            ObservedState(), {ts(9, 0): {("A",): 1, ("B",): 4}}, self.start, int(ts(9, 0))
        )
        state = accumulate(state, {ts(9, 0): {("A",): 3, ("B",): 4}}, self.start, int(ts(9, 0)))
        assert state.totals == {("A",): 3, ("B",): 4}

    def test_a_bucket_absent_from_a_later_answer_keeps_what_it_counted(self) -> None:
        state = accumulate(ObservedState(), {ts(9, 0): {("A",): 5}}, self.start, int(ts(9, 0)))
        state = accumulate(state, {}, self.start, int(ts(9, 30)))
        assert state.totals == {("A",): 5}
        state = accumulate(state, {ts(9, 0): {("A",): 5}}, self.start, int(ts(9, 30)))
        assert state.totals == {("A",): 5}

    def test_does_not_mutate_the_previous_state(self) -> None:
        before = accumulate(ObservedState(), {ts(9, 0): {("A",): 1}}, self.start, int(ts(9, 0)))
        accumulate(before, {ts(9, 0): {("A",): 5}, ts(9, 30): {("B",): 1}}, self.start,
                   int(ts(9, 30)))
        assert before.totals == {("A",): 1}
        assert before.counted == {ts(9, 0): {("A",): 1}}


class TestEvaluate:
    def test_reports_the_bucket_the_clock_chooses_with_zero_fill(self) -> None:
        points = [
            point(ts(10, 30), 4, "MARKETING", "IN"),  # in progress: seen, not reported
            point(ts(9, 30), 2, "MARKETING", "IN"),
            point(ts(9, 0), 6, "SERVICE", "KW"),
        ]
        result = evaluate(
            points, now=ts(10, 47), delay=1800, window_start=int(ts(5, 0)),
            previous=ObservedState(),
        )
        assert result.bucket_start == ts(9, 30)
        assert result.conversations == {("MARKETING", "IN"): 2, ("SERVICE", "KW"): 0}
        assert result.observed.totals == {("MARKETING", "IN"): 2, ("SERVICE", "KW"): 6}

    def test_an_empty_reported_bucket_reads_zero_for_every_label_set(self) -> None:
        points = [point(ts(8, 0), 3, "A"), point(ts(8, 30), 1, "B")]
        result = evaluate(
            points, now=ts(10, 47), delay=1800, window_start=int(ts(5, 0)),
            previous=ObservedState(),
        )
        assert result.bucket_start == ts(9, 30)
        assert result.conversations == {("A",): 0, ("B",): 0}

    def test_no_points_at_all(self) -> None:
        result = evaluate(
            [], now=ts(10, 47), delay=1800, window_start=int(ts(5, 0)), previous=ObservedState()
        )
        assert result.bucket_start == ts(9, 30)
        assert result.conversations == {}
        assert result.observed.totals == {}

    def test_label_sets_remembered_from_an_earlier_poll_keep_reading_zero(self) -> None:
        first = evaluate(
            [point(ts(9, 0), 3, "A")], now=ts(10, 17), delay=1800,
            window_start=int(ts(5, 0)), previous=ObservedState(),
        )
        # The next answer comes back empty (the upstream leaves the key out): A still reads 0.
        second = evaluate(
            [], now=ts(10, 47), delay=1800, window_start=int(ts(5, 0)), previous=first.observed
        )
        assert second.conversations == {("A",): 0}
        assert second.observed.totals == {("A",): 3}

    def test_label_sets_seen_only_in_provisional_buckets_or_at_zero_keep_reading_zero(
        self,
    ) -> None:
        # At 10:17 the buckets 9:30 and 10:00 are provisional; P is seen only there, Z only at 0.
        first = evaluate(
            [point(ts(9, 0), 3, "A"), point(ts(9, 30), 2, "P"), point(ts(10, 0), 1, "P"),
             point(ts(9, 0), 0, "Z")],
            now=ts(10, 17), delay=1800, window_start=int(ts(5, 0)), previous=ObservedState(),
        )
        assert first.conversations == {("A",): 3, ("P",): 0, ("Z",): 0}
        # The next answer has no data at all: every label set seen in the window still reads 0,
        # the same set of series as before (none vanishes for one poll and comes back).
        second = evaluate(
            [], now=ts(10, 20), delay=1800, window_start=int(ts(5, 0)), previous=first.observed
        )
        assert second.conversations == {("A",): 0, ("P",): 0, ("Z",): 0}
        assert second.observed.totals == {("A",): 3, ("P",): 0, ("Z",): 0}

    def test_a_label_set_goes_once_its_newest_bucket_left_the_window(self) -> None:
        first = evaluate(
            [point(ts(5, 0), 1, "OLD"), point(ts(6, 0), 1, "NEWER"), point(ts(9, 0), 3, "A")],
            now=ts(10, 17), delay=1800, window_start=int(ts(5, 0)), previous=ObservedState(),
        )
        # The window moved past 5:00 but not past 6:00; the answer no longer has OLD or NEWER.
        later = evaluate(
            [point(ts(9, 0), 3, "A")], now=ts(10, 47), delay=1800,
            window_start=int(ts(5, 30)), previous=first.observed,
        )
        assert later.conversations == {("A",): 0, ("NEWER",): 0}
        # The counter keeps every label set it ever counted: a counter series does not end.
        assert later.observed.totals == {("OLD",): 1, ("NEWER",): 1, ("A",): 3}

    def test_the_gauge_follows_a_revision_and_the_counter_adds_it(self) -> None:
        first = evaluate(
            [point(ts(9, 30), 3, "A")], now=ts(10, 31), delay=1800,
            window_start=int(ts(5, 0)), previous=ObservedState(),
        )
        second = evaluate(
            [point(ts(9, 30), 5, "A")], now=ts(10, 36), delay=1800,
            window_start=int(ts(5, 0)), previous=first.observed,
        )
        assert second.conversations == {("A",): 5}
        assert second.observed.totals == {("A",): 5}


class TestPackedCounts:
    def test_reads_like_a_mapping_and_skips_absent_positions(self) -> None:
        from array import array

        from exporter.pipeline.buckets import ABSENT, PackedCounts

        index = {("A",): 0, ("B",): 1, ("C",): 2, ("D",): 3}
        counts = PackedCounts(index, array("q", [5, ABSENT, 0]))  # D: past the end
        assert dict(counts) == {("A",): 5, ("C",): 0}
        assert counts == {("A",): 5, ("C",): 0}
        assert len(counts) == 2 and list(counts) == [("A",), ("C",)]
        assert list(counts.items()) == [(("A",), 5), (("C",), 0)]
        assert ("B",) not in counts and ("D",) not in counts and ("Z",) not in counts
        assert counts.get(("B",)) is None
        with pytest.raises(KeyError):
            counts[("D",)]

    def test_label_sets_keep_their_key_objects_from_poll_to_poll(self) -> None:
        # Memory: a label set seen in every poll is one tuple, not one per poll.
        first_key = tuple(["MARKETING", "IN"])
        state = accumulate(ObservedState(), {ts(9, 0): {first_key: 1}}, self_start(), int(ts(9, 0)))
        later_key = tuple(["MARKETING", "IN"])  # equal, another object (as from a new answer)
        assert later_key is not first_key
        state = accumulate(state, {ts(9, 30): {later_key: 2}}, self_start(), int(ts(9, 30)))
        assert next(iter(state.totals)) is first_key
        assert len(state.index) == 1
        assert state.totals == {first_key: 3}

    def test_old_buckets_stay_readable_after_the_index_grew(self) -> None:
        state = accumulate(ObservedState(), {ts(9, 0): {("A",): 1}}, self_start(), int(ts(9, 0)))
        state = accumulate(state, {ts(9, 30): {("B",): 4}}, self_start(), int(ts(9, 30)))
        assert state.counted == {ts(9, 0): {("A",): 1}, ts(9, 30): {("B",): 4}}
        # A re-read of 09:00 with B now in it: the short old array grows, nothing is lost.
        state = accumulate(state, {ts(9, 0): {("A",): 1, ("B",): 2}}, self_start(), int(ts(9, 30)))
        assert state.totals == {("A",): 1, ("B",): 6}


def self_start() -> int:
    return int(ts(4, 0))
