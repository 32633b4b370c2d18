from exporter.pipeline.snapshot import SnapshotStore, TargetSnapshot

DIMS = ("COUNTRY",)


def snap(name: str, success: bool = True, dimensions: tuple[str, ...] = DIMS) -> TargetSnapshot:
    return TargetSnapshot(name, "1", success, 0.1, dimensions=dimensions)


def test_a_view_never_changes_after_it_was_taken() -> None:
    store = SnapshotStore(DIMS)
    store.put(snap("a"))
    view = store.current()
    store.put(snap("b"))
    store.put(snap("a", success=False))
    assert list(view.snapshots) == ["a"]
    assert view.snapshots["a"].poll_success is True
    assert set(store.current().snapshots) == {"a", "b"}
    assert store.get("a").poll_success is False
    assert store.get("missing") is None


def test_retain_keeps_named_targets_while_dimensions_stay() -> None:
    store = SnapshotStore(DIMS)
    store.put(snap("a"))
    store.put(snap("b"))
    store.retain(["a", "c"], DIMS)
    assert set(store.current().snapshots) == {"a"}


def test_new_dimensions_refuse_snapshots_made_under_the_old_ones() -> None:
    store = SnapshotStore(DIMS)
    store.put(snap("a"))
    store.retain([], ("PHONE",))  # the reload decided nothing keeps its data
    assert store.current().dimensions == ("PHONE",)
    assert store.current().snapshots == {}
    assert store.put(snap("a")) is False  # a poll that started before the reload
    assert store.get("a") is None
    assert store.put(snap("a", dimensions=("PHONE",))) is True


def test_put_asks_accept_under_the_lock() -> None:
    store = SnapshotStore(DIMS)
    assert store.put(snap("a"), accept=lambda: False) is False
    assert store.get("a") is None
