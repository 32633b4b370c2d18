"""A fresh counter (a new process without saved state) counts none of the history it finds.

The rule, in buckets.fresh_state: the buckets complete at the counter's start are remembered at
its first fold, never added; buckets completing later are counted in full; revisions of the
remembered ones add only what they grew by. The expected values here come from a small model
written out below, not from buckets.py.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter.pipeline.buckets import (
    ObservedState,
    accumulate,
    evaluate,
    fresh_state,
    latest_complete_bucket,
)
from exporter.vocabulary import DataPoint

H = 1800
T0 = 1_780_000_200  # a half-hour boundary (2026-05-28 20:30 UTC)
assert T0 % H == 0
WINDOW = T0 - 40 * H  # every bucket of these tests is inside the window
LABELS = [("MARKETING",), ("UTILITY",), ("SERVICE",)]

Answer = dict[int, dict[tuple[str, ...], int]]


def test_the_first_poll_counts_nothing_of_the_window() -> None:
    answer = {T0 - 2 * H: {("A",): 5}, T0 - H: {("A",): 3, ("B",): 2}, T0: {("A",): 9}}
    state = accumulate(fresh_state(T0 - H), answer, WINDOW, T0 - H)
    # Every label set has its series (so that increase() sees its first conversations), at 0.
    assert state.totals == {("A",): 0, ("B",): 0}
    assert state.baseline is None, "the baseline is taken once"
    # The remembered counts: a re-read of the same buckets adds nothing ...
    again = accumulate(state, answer, WINDOW, T0 - H)
    assert again.totals == {("A",): 0, ("B",): 0}
    # ... an upward revision of one adds its difference, and the bucket that completes next
    # (T0, provisional at the first poll) is counted in full.
    revised = {T0 - 2 * H: {("A",): 7}, T0 - H: {("A",): 3, ("B",): 2}, T0: {("A",): 10}}
    later = accumulate(again, revised, WINDOW, T0)
    assert later.totals == {("A",): 2 + 10, ("B",): 0}


def test_a_remembered_bucket_without_a_label_set_counts_it_when_it_shows_up() -> None:
    state = accumulate(fresh_state(T0), {T0: {("A",): 4}}, WINDOW, T0)
    # Late data: B appears in the remembered bucket. It was 0 there; all of it is new.
    state = accumulate(state, {T0: {("A",): 4, ("B",): 6}}, WINDOW, T0)
    assert state.totals == {("A",): 0, ("B",): 6}


def test_buckets_completing_between_the_start_and_a_late_first_success_are_counted() -> None:
    # The counter started when T0 - 2H was the reported bucket; the first attempts failed, and
    # the first answer came an hour later: T0 - H and T0 completed while this process ran.
    answer = {T0 - 2 * H: {("A",): 1}, T0 - H: {("A",): 2}, T0: {("A",): 4}}
    state = accumulate(fresh_state(T0 - 2 * H), answer, WINDOW, T0)
    assert state.totals == {("A",): 6}


def test_a_baseline_not_complete_yet_waits_for_its_bucket() -> None:
    # The clock stepped back between the start and the first answer: the baseline bucket is
    # still in progress. It and its predecessors stay history, whenever they complete.
    state = accumulate(fresh_state(T0), {T0 - H: {("A",): 3}, T0: {("A",): 1}}, WINDOW, T0 - H)
    assert state.totals == {("A",): 0} and state.baseline == T0
    state = accumulate(state, {T0: {("A",): 8}, T0 + H: {("A",): 5}}, WINDOW, T0 + H)
    assert state.totals == {("A",): 5} and state.baseline is None


def test_evaluate_with_a_fresh_state() -> None:
    now = T0 + 2 * H + 17 * 60  # reports T0 with the 30m delay
    points = [
        DataPoint(T0 - H, T0, 3, ("A",)),
        DataPoint(T0, T0 + H, 5, ("A",)),
        DataPoint(T0 + H, T0 + 2 * H, 2, ("B",)),  # in progress
    ]
    reported = latest_complete_bucket(now, 1800)
    result = evaluate(
        points, now=now, delay=1800, window_start=WINDOW, previous=fresh_state(reported)
    )
    assert result.bucket_start == T0
    assert result.conversations == {("A",): 5, ("B",): 0}
    assert result.observed.totals == {("A",): 0, ("B",): 0}


def test_a_state_without_a_baseline_counts_everything() -> None:
    """What a state read back from a file is: it goes on counting."""
    state = accumulate(ObservedState(), {T0 - H: {("A",): 3}, T0: {("A",): 5}}, WINDOW, T0)
    assert state.totals == {("A",): 8}


# Hypothesis: any sequence of answers, revisions up and down, new label sets, a clock that
# moves forward in steps of zero to three buckets.

counts = st.integers(min_value=0, max_value=50)


@st.composite
def polls(draw) -> tuple[int, list[tuple[int, Answer]]]:
    """(baseline, [(latest complete bucket, answer), ...]) of one fresh counter."""
    baseline = T0 + H * draw(st.integers(min_value=0, max_value=3))
    latest = baseline + H * draw(st.integers(min_value=0, max_value=2))
    sequence = []
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        buckets = range(latest - 6 * H, latest + 2 * H, H)  # complete ones, and two open
        answer: Answer = {}
        for start in draw(st.lists(st.sampled_from(list(buckets)), unique=True, max_size=8)):
            chosen = draw(st.lists(st.sampled_from(LABELS), unique=True, min_size=1))
            answer[start] = {labels: draw(counts) for labels in chosen}
        sequence.append((latest, answer))
        latest += H * draw(st.integers(min_value=0, max_value=3))
    return baseline, sequence


def model(baseline: int, sequence: list[tuple[int, Answer]]) -> dict[tuple[str, ...], int]:
    """Per bucket and label set, the highest count seen complete, less what the first answer
    said of a bucket up to the baseline; summed by label set."""
    first_latest, first_answer = sequence[0]
    assert first_latest >= baseline
    best: dict[tuple[int, tuple[str, ...]], int] = {}
    for latest, answer in sequence:
        for start, by_labels in answer.items():
            if start <= latest:
                for labels, count in by_labels.items():
                    best[start, labels] = max(best.get((start, labels), 0), count)
    totals: dict[tuple[str, ...], int] = {
        labels: 0 for _, answer in sequence for by_labels in answer.values() for labels in by_labels
    }
    for (start, labels), count in best.items():
        remembered = first_answer.get(start, {}).get(labels, 0) if start <= baseline else 0
        totals[labels] += count - remembered
    return totals


def run(baseline: int, sequence: list[tuple[int, Answer]]) -> list[ObservedState]:
    states = []
    state = fresh_state(baseline)
    for latest, answer in sequence:
        state = accumulate(state, answer, WINDOW, latest)
        states.append(state)
    return states


@given(polls())
def test_totals_follow_the_model(case) -> None:
    baseline, sequence = case
    assert dict(run(baseline, sequence)[-1].totals) == model(baseline, sequence)


@given(polls())
def test_the_first_poll_adds_only_buckets_completed_after_the_baseline(case) -> None:
    baseline, sequence = case
    latest, answer = sequence[0]
    first = run(baseline, sequence[:1])[0]
    expected: dict[tuple[str, ...], int] = {}
    for start, by_labels in answer.items():
        for labels, count in by_labels.items():
            added = count if baseline < start <= latest else 0
            expected[labels] = expected.get(labels, 0) + added
    assert dict(first.totals) == expected
    if latest == baseline:  # the usual case: the first attempt succeeded
        assert set(first.totals.values()) <= {0}


@given(polls())
def test_counters_never_decrease(case) -> None:
    baseline, sequence = case
    previous: dict = {}
    for state in run(baseline, sequence):
        totals = dict(state.totals)
        assert all(totals.get(labels, -1) >= value for labels, value in previous.items())
        previous = totals


@st.composite
def restarts(draw):
    """Final counts per bucket, revealed over time with late upward revisions; one process
    polls until `stop`, another starts `down` buckets later."""
    buckets = range(T0, T0 + 16 * H, H)
    final = {start: {labels: draw(counts) for labels in LABELS} for start in buckets}
    growth = draw(st.sampled_from([0.0, 0.5]))  # share still missing while a bucket is young
    stop = T0 + H * draw(st.integers(min_value=2, max_value=7))
    down = draw(st.integers(min_value=0, max_value=4))
    return final, growth, stop, down


def answer_at(final: dict, growth: float, latest: int) -> Answer:
    """The upstream's answer when `latest` is the newest complete bucket: the last two complete
    buckets are not settled yet (a share `growth` of them is still missing)."""
    answer: Answer = {}
    for start, by_labels in final.items():
        if start > latest + H:
            continue
        young = start > latest - 2 * H
        answer[start] = {
            labels: int(count * (1 - growth)) if young else count
            for labels, count in by_labels.items()
        }
    return answer


@given(restarts())
def test_a_restart_adds_nothing_and_misses_at_most_the_buckets_of_the_downtime(case) -> None:
    final, growth, stop, down = case
    end = T0 + 12 * H

    def counted(first: int, last: int) -> int:
        """What a fresh process polling at every bucket from `first` to `last` counts."""
        state = fresh_state(first)
        for latest in range(first, last + H, H):
            state = accumulate(state, answer_at(final, growth, latest), WINDOW, latest)
        return sum(state.totals.values())

    # Prometheus adds up the increase of each process (the second one starts after a reset);
    # each starts at 0, so that is what each counted.
    restart = stop + down * H
    both = counted(T0, stop) + counted(restart, end)
    # One process that never restarted; with settled counts, it counts every bucket that
    # completed after its start, in full.
    never = counted(T0, end)
    assert both <= never, "nothing is counted twice"
    if down == 0:
        assert both == never, "a restart within one bucket costs nothing"
    if growth == 0:
        assert never == sum(sum(final[start].values()) for start in range(T0 + H, end + H, H))
        # Exactly the buckets that completed while nobody polled are missing.
        downtime = sum(sum(final[start].values()) for start in range(stop + H, restart + H, H))
        assert never - both == downtime
