"""The state file (`--persistence.file`): round trips, fingerprints, faults, the lock.

In-process, on real SQLite files in a temporary directory. The real process (restarts, SIGKILL,
a full disk, a real Prometheus) is tests/test_persistence_process.py; restarts on a fake clock
are in tests/test_restart.py.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.config import Config, Filters, Secret, SplashifyConfig, Target
from exporter.pipeline.buckets import ObservedState, accumulate, fresh_state
from exporter.pipeline.persistence import (
    APPLICATION_ID,
    FileInUse,
    PersistenceError,
    decode_state,
    encode_counts,
    encode_labels,
    open_state_file,
)

H = 1800
T0 = 1_780_000_200
DIMS = ("CONVERSATION_CATEGORY", "COUNTRY")
ACME = Target(name="acme", waba_id="1001")
GLOBEX = Target(name="globex", customer_id="cus_1")
CONFIG = Config(
    splashify=SplashifyConfig(api_key=Secret("k")), targets=(ACME, GLOBEX), dimensions=DIMS
)

CONVERSATIONS = ("conversation_analytics", "conversation")
"""The conversation counter's key: a lone saved state is this counter's."""


def same(a: ObservedState, b: ObservedState) -> bool:
    """Equal as states: what the counter reads and what it remembers."""
    return (
        dict(a.index) == dict(b.index)
        and list(a.index) == list(b.index)
        and a.total_values == b.total_values
        and a.last_seen == b.last_seen
        and dict(a.counted_values) == dict(b.counted_values)
        and (a.floor, a.baseline) == (b.floor, b.baseline)
    )


def a_state(seed: int = 0) -> ObservedState:
    state = fresh_state(T0)
    for step in range(4):
        latest = T0 + step * H
        answer = {
            latest - H: {("MARKETING", "IN"): 3 + seed, ("UTILITY", "KW"): step},
            latest: {("MARKETING", "IN"): 5 + step, ("SERVICE", "ÄÖ ☃"): 1},
            latest + H: {("NEW", ""): 2},
        }
        state = accumulate(state, answer, T0 - 10 * H, latest)
    return state


label_values = st.text(max_size=12)


@st.composite
def states(draw) -> ObservedState:
    labels = draw(st.lists(st.tuples(label_values, label_values), unique=True, max_size=12))
    state = fresh_state(T0) if draw(st.booleans()) else ObservedState()
    latest = T0
    for _ in range(draw(st.integers(min_value=0, max_value=5))):
        answer = {}
        for start in draw(st.lists(st.sampled_from(range(latest - 4 * H, latest + 2 * H, H)),
                                   unique=True, max_size=4)):
            chosen = draw(st.lists(st.sampled_from(labels), unique=True)) if labels else []
            answer[start] = {lab: draw(st.integers(0, 2**40)) for lab in chosen}
        window = latest - draw(st.integers(min_value=2, max_value=4)) * H
        state = accumulate(state, answer, window, latest)
        latest += H * draw(st.integers(min_value=0, max_value=2))
    return state


@given(states())
def test_a_state_survives_encoding(state: ObservedState) -> None:
    back = decode_state(encode_labels(state), encode_counts(state), 2)
    assert same(back, state)
    assert dict(back.totals) == dict(state.totals)
    assert {k: dict(v) for k, v in back.counted.items()} == {
        k: dict(v) for k, v in state.counted.items()
    }


def test_save_and_restore(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    state_file = open_state_file(path)
    assert state_file.restore(CONFIG) == {}
    outcomes = []
    state_file.on_save = lambda ok, when: outcomes.append(ok)
    assert state_file.save(ACME, CONFIG, a_state(1))
    assert state_file.save(GLOBEX, CONFIG, a_state(2))
    assert state_file.save(ACME, CONFIG, a_state(3))  # replaces acme's row
    assert outcomes == [True, True, True]
    state_file.close()

    again = open_state_file(path)
    restored = again.restore(CONFIG)
    assert set(restored) == {"acme", "globex"}
    # By target, then by counter: these are the conversation counters' states.
    assert set(restored["acme"]) == set(restored["globex"]) == {CONVERSATIONS}
    assert same(restored["acme"][CONVERSATIONS], a_state(3))
    assert same(restored["globex"][CONVERSATIONS], a_state(2))
    again.close()


def test_a_save_writes_only_its_own_row(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    state_file = open_state_file(path)
    state_file.save(ACME, CONFIG, a_state(1))
    state_file.save(GLOBEX, CONFIG, a_state(2))
    before = _rows(state_file)
    state_file.save(ACME, CONFIG, a_state(5))
    after = _rows(state_file)
    assert after["customer:cus_1"] == before["customer:cus_1"]
    assert after["waba:1001"] != before["waba:1001"]
    state_file.close()


def _rows(state_file) -> dict[str, tuple]:
    connection = state_file._connection
    return {
        row[0]: row[1:]
        for row in connection.execute("SELECT target, saved_at, counts FROM counter_state")
    }


@pytest.mark.parametrize(
    "changed",
    [
        dataclasses.replace(CONFIG, dimensions=("COUNTRY", "CONVERSATION_CATEGORY")),
        dataclasses.replace(CONFIG, filters=Filters(conversation_categories=("MARKETING",))),
        dataclasses.replace(
            CONFIG, targets=(dataclasses.replace(ACME, phone_numbers=("91",)), GLOBEX)
        ),
        dataclasses.replace(CONFIG, targets=(dataclasses.replace(ACME, name="acme2"), GLOBEX)),
    ],
    ids=["dimensions", "filters", "phone_numbers", "name"],
)
def test_a_state_saved_under_another_meaning_is_not_applied(
    tmp_path: Path, changed: Config, caplog
) -> None:
    path = str(tmp_path / "state.db")
    state_file = open_state_file(path)
    state_file.save(ACME, CONFIG, a_state())
    state_file.save(GLOBEX, CONFIG, a_state())
    state_file.close()
    with caplog.at_level(logging.INFO):
        again = open_state_file(path)
        restored = again.restore(changed)
    acme_changed = changed.targets[0] != ACME
    if acme_changed:
        assert "globex" in restored and "acme" not in restored and "acme2" not in restored
    else:
        assert restored == {}
    assert "start afresh" in caplog.text
    again.close()


def test_rows_of_targets_this_process_does_not_poll_are_dropped(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    state_file = open_state_file(path)
    state_file.save(ACME, CONFIG, a_state())
    state_file.save(GLOBEX, CONFIG, a_state())
    state_file.close()
    only_acme = dataclasses.replace(CONFIG, targets=(ACME,))
    again = open_state_file(path)
    assert set(again.restore(only_acme)) == {"acme"}
    again.close()
    third = open_state_file(path)
    assert set(third.restore(CONFIG)) == {"acme"}, "globex's row was dropped"
    third.close()


def test_forget_drops_a_targets_row(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    state_file = open_state_file(path)
    state_file.save(ACME, CONFIG, a_state())
    state_file.save(GLOBEX, CONFIG, a_state())
    state_file.forget([GLOBEX])
    state_file.close()
    again = open_state_file(path)
    assert set(again.restore(CONFIG)) == {"acme"}
    again.close()


def unreadable_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".unreadable-" in p.name)


def test_garbage_is_moved_aside_never_deleted(tmp_path: Path, caplog) -> None:
    path = tmp_path / "state.db"
    garbage = b"this is not SQLite\n" * 300
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING):
        state_file = open_state_file(str(path))
    assert state_file.restore(CONFIG) == {}
    (moved,) = unreadable_files(tmp_path)
    assert moved.read_bytes() == garbage
    assert "cannot be read back" in caplog.text and str(moved) in caplog.text
    assert state_file.save(ACME, CONFIG, a_state())  # and the fresh file works
    state_file.close()


def test_a_damaged_row_moves_the_file_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state_file = open_state_file(str(path))
    state_file.save(ACME, CONFIG, a_state())
    state_file.close()
    with sqlite3.connect(path) as connection:  # a bit flips in the blob
        (counts,) = connection.execute("SELECT counts FROM counter_state").fetchone()
        damaged = bytes([counts[0] ^ 1]) + counts[1:]
        connection.execute("UPDATE counter_state SET counts = ?", (damaged,))
    connection.close()
    again = open_state_file(str(path))
    assert again.restore(CONFIG) == {}
    assert len(unreadable_files(tmp_path)) == 1
    again.close()


def test_a_truncated_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state_file = open_state_file(str(path))
    big = {T0: {("MARKETING", f"phone-{n}"): n for n in range(5000)}}
    state_file.save(ACME, CONFIG, accumulate(ObservedState(), big, T0 - H, T0))
    state_file.close()  # checkpointed into the main file
    data = path.read_bytes()
    assert len(data) > 8 * 4096
    path.write_bytes(data[: len(data) // 2 + 100])
    again = open_state_file(str(path))
    assert again.restore(CONFIG) == {}
    assert len(unreadable_files(tmp_path)) == 1
    again.close()


def test_a_newer_schema_or_another_applications_file_is_moved_aside(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    open_state_file(str(newer)).close()
    with sqlite3.connect(newer) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (x)")
    connection.close()
    for path in (newer, other):
        state_file = open_state_file(str(path))
        assert state_file.restore(CONFIG) == {}
        state_file.close()
    assert len(unreadable_files(tmp_path)) == 2
    # The fresh file is this exporter's.
    with sqlite3.connect(other) as connection:
        assert connection.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    connection.close()


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PersistenceError, match="does not exist"):
        open_state_file(str(tmp_path / "absent" / "state.db"))
    with pytest.raises(PersistenceError, match="is a directory"):
        open_state_file(str(tmp_path))


def test_a_second_process_cannot_open_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    state_file = open_state_file(path)
    state_file.save(ACME, CONFIG, a_state())
    # Another process: SQLite's locks are per process (POSIX locks), so a second connection
    # in this one would not be refused.
    code = (
        "import sys\n"
        "from exporter.pipeline.persistence import FileInUse, open_state_file\n"
        "try:\n"
        f"    open_state_file({path!r})\n"
        "except FileInUse as error:\n"
        "    print(error); sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == f"--persistence.file: {path} is in use by another process"
    assert not unreadable_files(tmp_path), "a file in use is never moved aside"
    state_file.close()
    # Once the holder is gone, the file opens and holds the state.
    again = open_state_file(path)
    assert set(again.restore(CONFIG)) == {"acme"}
    again.close()
    assert FileInUse.__mro__[1] is PersistenceError


def test_a_failing_save_is_reported_once_per_change(tmp_path: Path, caplog) -> None:
    state_file = open_state_file(str(tmp_path / "state.db"))
    outcomes = []
    state_file.on_save = lambda ok, when: outcomes.append(ok)
    state_file.save(ACME, CONFIG, a_state())
    # The file becomes read-only under the exporter (as a disk remounted read-only would).
    state_file._connection.execute("PRAGMA query_only = ON")
    with caplog.at_level(logging.INFO, logger="exporter.pipeline.persistence"):
        for seed in range(3):
            assert state_file.save(ACME, CONFIG, a_state(seed)) is False
        state_file._connection.execute("PRAGMA query_only = OFF")
        assert state_file.save(ACME, CONFIG, a_state(7))
        assert state_file.save(ACME, CONFIG, a_state(8))
    assert outcomes == [True, False, False, False, True, True]
    lines = [r for r in caplog.records if r.name == "exporter.pipeline.persistence"]
    assert [r.levelname for r in lines] == ["ERROR", "INFO"], caplog.text
    assert "cannot save" in lines[0].getMessage() and "works again" in lines[1].getMessage()
    state_file.close()
