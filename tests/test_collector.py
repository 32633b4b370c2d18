from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.pipeline.snapshot import SnapshotStore, TargetSnapshot
from exporter.serve.collector import ConversationCollector, is_stale
from exporter.serve.metrics import METRICS

NOW = 1_700_000_200.0
CATEGORY_COUNTRY = ("CONVERSATION_CATEGORY", "COUNTRY")


def scrape(store: SnapshotStore, stale_after: float = 3600, now: float = NOW) -> dict:
    registry = CollectorRegistry()
    registry.register(ConversationCollector(store, stale_after, clock=lambda: now))
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def good(
    name: str = "acme", waba_id: str = "1153", dimensions: tuple[str, ...] = CATEGORY_COUNTRY
) -> TargetSnapshot:
    return TargetSnapshot(
        target_name=name,
        waba_id=waba_id,
        poll_success=True,
        poll_duration=0.25,
        last_success=1_700_000_100.0,
        bucket_start=1_700_000_000 - 1_700_000_000 % 1800,
        conversations={("MARKETING", "IN"): 42, ("SERVICE", "KW"): 0},
        observed={("MARKETING", "IN"): 1234, ("SERVICE", "KW"): 7},
        dimensions=dimensions,
    )


def test_data_series_carry_target_and_enabled_dimension_labels() -> None:
    store = SnapshotStore(CATEGORY_COUNTRY)
    store.put(good())
    families = scrape(store)
    samples = {
        tuple(sorted(s.labels.items())): s.value for s in families["whatsapp_conversations"].samples
    }
    assert samples == {
        (
            ("conversation_category", "MARKETING"),
            ("country", "IN"),
            ("waba_id", "1153"),
            ("waba_name", "acme"),
        ): 42.0,
        (
            ("conversation_category", "SERVICE"),
            ("country", "KW"),
            ("waba_id", "1153"),
            ("waba_name", "acme"),
        ): 0.0,
    }
    observed = families["whatsapp_conversations_observed"]
    assert observed.type == "counter"
    assert {s.name for s in observed.samples} == {"whatsapp_conversations_observed_total"}
    assert sorted(s.value for s in observed.samples) == [7.0, 1234.0]


def test_target_metrics() -> None:
    store = SnapshotStore(CATEGORY_COUNTRY)
    store.put(good())
    families = scrape(store)

    def value(name: str) -> float:
        (sample,) = families[name].samples
        assert sample.labels == {"waba_id": "1153", "waba_name": "acme"}
        return sample.value

    assert value("whatsapp_exporter_poll_success") == 1.0
    assert value("whatsapp_exporter_poll_duration_seconds") == 0.25
    assert value("whatsapp_exporter_last_success_timestamp_seconds") == 1_700_000_100.0
    assert value("whatsapp_conversations_bucket_start_timestamp_seconds") == 1_699_999_200.0


def test_a_target_that_never_succeeded_has_only_its_poll_status() -> None:
    store = SnapshotStore(("COUNTRY",))
    store.put(
        TargetSnapshot("globex", "", poll_success=False, poll_duration=1.5, dimensions=("COUNTRY",))
    )
    families = scrape(store)
    assert [s.value for s in families["whatsapp_exporter_poll_success"].samples] == [0.0]
    assert families["whatsapp_exporter_poll_success"].samples[0].labels == {
        "waba_id": "",
        "waba_name": "globex",
    }
    assert families["whatsapp_conversations"].samples == []
    assert families["whatsapp_exporter_last_success_timestamp_seconds"].samples == []


def test_help_of_every_data_metric_says_it_is_cached() -> None:
    for spec in METRICS:
        if spec.name.startswith("whatsapp_conversations"):
            assert "as of the last poll" in spec.documentation.lower()
            assert "whatsapp_exporter_last_success_timestamp_seconds" in spec.documentation


def test_a_swapped_snapshot_replaces_old_series_entirely() -> None:
    store = SnapshotStore(CATEGORY_COUNTRY)
    store.put(good())
    store.put(
        TargetSnapshot(
            "acme", "1153", True, 0.1, NOW, 0, {("UTILITY", "BR"): 3}, {}, CATEGORY_COUNTRY
        )
    )
    families = scrape(store)
    assert [s.labels["country"] for s in families["whatsapp_conversations"].samples] == ["BR"]


def test_several_targets_share_one_family_each() -> None:
    store = SnapshotStore(CATEGORY_COUNTRY)
    store.put(good("acme", "1"))
    store.put(good("globex", "2"))
    families = scrape(store)
    assert {s.labels["waba_name"] for s in families["whatsapp_conversations"].samples} == {
        "acme",
        "globex",
    }
    assert len(families["whatsapp_exporter_poll_success"].samples) == 2


def test_stale_data_is_dropped_but_the_poll_status_stays() -> None:
    store = SnapshotStore(CATEGORY_COUNTRY)
    store.put(good())  # last success at 1_700_000_100
    fresh = scrape(store, stale_after=100, now=1_700_000_200)
    assert fresh["whatsapp_conversations"].samples
    stale = scrape(store, stale_after=99, now=1_700_000_200)
    for name in (
        "whatsapp_conversations",
        "whatsapp_conversations_observed",
        "whatsapp_conversations_bucket_start_timestamp_seconds",
    ):
        assert stale[name].samples == [], name
    for name in (
        "whatsapp_exporter_poll_success",
        "whatsapp_exporter_last_success_timestamp_seconds",
        "whatsapp_exporter_poll_duration_seconds",
    ):
        assert len(stale[name].samples) == 1, name


def test_is_stale() -> None:
    snapshot = good()
    assert not is_stale(snapshot, 1_700_000_100 + 60, 60)
    assert is_stale(snapshot, 1_700_000_100 + 61, 60)
    assert is_stale(TargetSnapshot("a", "", False, 0.1), NOW, 1e9), "never succeeded"


def test_label_names_follow_the_stores_dimensions() -> None:
    store = SnapshotStore(("COUNTRY",))
    store.put(good(dimensions=CATEGORY_COUNTRY))  # made before a reload: refused
    assert store.get("acme") is None
    store.put(TargetSnapshot("acme", "1", True, 0.1, NOW, 0, {("IN",): 2}, {}, ("COUNTRY",)))
    (sample,) = scrape(store)["whatsapp_conversations"].samples
    assert sample.labels == {"waba_id": "1", "waba_name": "acme", "country": "IN"}
