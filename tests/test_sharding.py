"""Sharding: a stable hash, every target owned by exactly one shard, an even spread, the flag's
syntax, and an exporter whose shard owns nothing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from exporter.config import Config, Secret, Shard, SplashifyConfig, Target
from exporter.pipeline.sharding import (
    owned_targets,
    parse_shard,
    shard_config,
    shard_from_flag,
    shard_of,
    target_id,
)
from tests.conftest import parse_metrics

# Worked out apart from exporter/pipeline/sharding.py, with coreutils:
#   printf %s 115344761664057 | sha256sum   ->  f46e03640b3c9411...
# and the first 16 hex digits (8 bytes, big-endian) modulo each total. A change of hash, byte
# order or width fails here: it would move targets between replicas on upgrade.
KNOWN = [
    ("115344761664057", {2: 1, 3: 0, 5: 3, 7: 6, 1000: 913}),
    ("cus_8f2a", {2: 0, 3: 0, 5: 0, 7: 1, 1000: 430}),
    ("a", {2: 0, 3: 1, 5: 0, 7: 4, 1000: 250}),
    ("1", {2: 1, 3: 1, 5: 3, 7: 2, 1000: 913}),
    ("104729385610442", {2: 1, 3: 2, 5: 4, 7: 6, 1000: 969}),
]

IDS = [f"{100000000000000 + 7919 * n}" for n in range(5000)] + [f"cus_{n:x}" for n in range(5000)]


def waba(waba_id: str, name: str | None = None) -> Target:
    return Target(name=name or waba_id, waba_id=waba_id)


def config_with(targets: tuple[Target, ...]) -> Config:
    return Config(splashify=SplashifyConfig(api_key=Secret("k")), targets=targets)


# --- the hash --------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "shards"), KNOWN)
def test_known_assignments(target: str, shards: dict[int, int]) -> None:
    assert {total: shard_of(target, total) for total in shards} == shards


def test_the_hash_is_the_same_in_another_process_with_another_hash_seed() -> None:
    """Python's hash() would differ here: str hashes are salted per process."""
    script = (
        "from exporter.pipeline.sharding import shard_of; "
        "print([shard_of(i, 7) for i in ('a', 'cus_8f2a', '115344761664057')])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert outputs == {f"{[shard_of(i, 7) for i in ('a', 'cus_8f2a', '115344761664057')]}\n"}


def test_one_shard_owns_everything() -> None:
    assert {shard_of(i, 1) for i in IDS} == {0}


@pytest.mark.parametrize("total", [0, -1, True, 2.0])
def test_shard_of_rejects_a_bad_total(total: object) -> None:
    with pytest.raises(ValueError, match="total must be an integer of at least 1"):
        shard_of("1", total)  # type: ignore[arg-type]


@pytest.mark.parametrize("total", range(1, 8))
def test_every_target_is_owned_by_exactly_one_shard(total: int) -> None:
    targets = tuple(waba(i) for i in IDS[:2000])
    owners = Counter(
        t for index in range(total) for t in owned_targets(targets, Shard(index, total))
    )
    assert set(owners) == set(targets)
    assert set(owners.values()) == {1}


@pytest.mark.parametrize("total", [2, 3, 5, 7, 10])
def test_ten_thousand_ids_spread_evenly(total: int) -> None:
    # A distribution check on fixed ids: the counts are the same on every run. The bound is
    # loose (about six standard deviations at total 10) so that it flags a broken hash, e.g.
    # one that sends every customer id to one shard, not an unlucky but fine one.
    counts = Counter(shard_of(i, total) for i in IDS)
    expected = len(IDS) / total
    assert set(counts) == set(range(total))
    assert all(abs(n - expected) < 0.2 * expected for n in counts.values()), counts


# --- targets and configs ---------------------------------------------------------------------


def test_the_id_is_hashed_not_the_name() -> None:
    targets = (waba("115344761664057", "acme"), Target(name="globex", customer_id="cus_8f2a"))
    assert [target_id(t) for t in targets] == ["115344761664057", "cus_8f2a"]
    renamed = tuple(dataclasses.replace(t, name=t.name + "-renamed") for t in targets)
    for total in range(1, 8):
        for index in range(total):
            shard = Shard(index, total)
            assert [t.upstream_id for t in owned_targets(targets, shard)] == [
                t.upstream_id for t in owned_targets(renamed, shard)
            ]


def test_owned_targets_keep_their_config_order() -> None:
    targets = tuple(waba(i) for i in IDS[:50])
    owned = owned_targets(targets, Shard(1, 3))
    assert list(owned) == [t for t in targets if t in owned]
    assert owned == tuple(t for t in targets if shard_of(t.upstream_id, 3) == 1)


def test_shard_config_keeps_the_shard_and_everything_but_the_other_targets() -> None:
    config = config_with(tuple(waba(i) for i in IDS[:20]))
    sharded = shard_config(config, Shard(1, 2))
    assert sharded.shard == Shard(1, 2)
    assert sharded.targets == owned_targets(config.targets, Shard(1, 2))
    assert 0 < len(sharded.targets) < len(config.targets)
    assert dataclasses.replace(sharded, targets=config.targets, shard=Shard()) == config
    assert shard_config(sharded, Shard(1, 2)) == sharded, "the same shard again changes nothing"
    assert shard_config(config, Shard()) == config


# --- Shard and the flag's syntax -------------------------------------------------------------


def test_the_default_shard_is_everything() -> None:
    assert Shard() == Shard(0, 1) and Shard().is_everything
    assert not Shard(0, 2).is_everything
    assert str(Shard(1, 3)) == "1/3"


@pytest.mark.parametrize(
    ("text", "shard"),
    [("0/1", Shard(0, 1)), ("1/3", Shard(1, 3)), (" 2/3 ", Shard(2, 3)), ("09/10", Shard(9, 10))],
)
def test_parse_shard(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected INDEX/TOTAL such as 0/2 or 1/2, got ''"),
        ("1", "expected INDEX/TOTAL such as 0/2 or 1/2, got '1'"),
        ("1/", "expected INDEX/TOTAL such as 0/2 or 1/2, got '1/'"),
        ("-1/2", "expected INDEX/TOTAL such as 0/2 or 1/2, got '-1/2'"),
        ("1 / 2", "expected INDEX/TOTAL such as 0/2 or 1/2, got '1 / 2'"),
        ("a/b", "expected INDEX/TOTAL such as 0/2 or 1/2, got 'a/b'"),
        ("1/2/3", "expected INDEX/TOTAL such as 0/2 or 1/2, got '1/2/3'"),
        ("1/" + "9" * 40, "expected INDEX/TOTAL such as 0/2 or 1/2, got '1/" + "9" * 40 + "'"),
        ("0/0", "TOTAL must be at least 1, got 0/0"),
        ("2/2", "INDEX must be from 0 to TOTAL - 1 (shards count from 0: 0/2 and 1/2), got 2/2"),
        ("5/3", "INDEX must be from 0 to TOTAL - 1 (shards count from 0: 0/2 and 1/2), got 5/3"),
    ],
)
def test_parse_shard_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_shard(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(("index", "total"), [(True, 2), (0, 2.0), ("0", 2), (-1, 2), (1, 1)])
def test_shard_rejects_what_is_no_shard(index: object, total: object) -> None:
    with pytest.raises(ValueError):
        Shard(index, total)  # type: ignore[arg-type]


# --- a shard that owns nothing ---------------------------------------------------------------


def test_an_exporter_with_no_targets_is_ready_and_serves_its_own_metrics() -> None:
    from exporter.app import Exporter

    targets = (waba("115344761664057"), Target(name="globex", customer_id="cus_8f2a"))
    config = shard_config(config_with(targets), Shard(2, 3))  # both ids hash to 0 of 3
    assert config.targets == ()
    exporter = Exporter(config)
    try:
        assert exporter.is_ready()
        assert exporter.poll_all_once()
        exporter.start_polling()  # a scheduler with no jobs
        assert exporter.is_ready()
        families = parse_metrics(exporter.exposition().decode())
    finally:
        exporter.stop()
    assert families["whatsapp_exporter_targets"].samples[0].value == 0
    assert families["whatsapp_exporter_build_info"].samples
    assert not families["whatsapp_conversations"].samples
    assert not families["whatsapp_exporter_poll_success"].samples


def test_shard_from_flag_passes_none_through_and_names_the_flag() -> None:
    assert shard_from_flag(None) is None
    assert shard_from_flag("1/3") == Shard(1, 3)
    with pytest.raises(ValueError, match=r"^--shard: expected INDEX/TOTAL"):
        shard_from_flag("half")
