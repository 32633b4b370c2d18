from exporter.snapshot import SnapshotStore, TargetSnapshot


def test_a_view_never_changes_after_it_was_taken() -> None:
    store = SnapshotStore()
    store.put(TargetSnapshot("a", "1", True, 0.1))
    view = store.current()
    store.put(TargetSnapshot("b", "2", True, 0.1))
    store.put(TargetSnapshot("a", "1", False, 0.2))
    assert list(view) == ["a"]
    assert view["a"].poll_success is True
    assert set(store.current()) == {"a", "b"}
    assert store.get("a").poll_success is False
    assert store.get("missing") is None
