"""A deterministic model of WhatsApp conversation traffic, and what the upstream answers about it.

Every count is a pure function of (account, combo, bucket, as_of): there is no state and no
randomness beyond a blake2b hash, so a test can recompute exactly what the simulator answered
from the query and time it recorded, and two runs of the demo show the same numbers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache

from exporter.upstream.query import AnalyticsQuery
from exporter.vocabulary import DIMENSIONS, FILTER_TO_ANSWER_VALUE, HALF_HOUR_SECONDS

DAY_SECONDS = 86400

Point = dict[str, int | str]
"""One data point as the upstream sends it: start, end, conversation and dimension keys."""


@dataclass(frozen=True, slots=True)
class SimAccount:
    """One simulated WABA.

    `phone_numbers` are in decreasing order of traffic; `countries` are (ISO code, weight) of
    the users it talks to. `utc_offset_minutes` places the daily curve and the DAILY/MONTHLY
    boundaries in the account's time zone. `peak_volume` is the account's total conversations
    per half hour at the daily peak, before noise.
    """

    waba_id: str
    name: str
    customer_id: str | None
    phone_numbers: tuple[str, ...]
    countries: tuple[tuple[str, float], ...]
    utc_offset_minutes: int
    peak_volume: float
    label_sets: int = 0
    """0: the label sets of a real account (a few dozen, from `_TEMPLATES`). N > 0: exactly N
    label sets, spread over the templates by their shares, each carrying `peak_volume / N` (give
    or take half) at the daily peak; see `scaled_accounts`."""

    def __post_init__(self) -> None:
        if not self.phone_numbers or not self.countries:
            raise ValueError(f"{self.waba_id}: needs at least one phone number and country")
        if self.label_sets < 0:
            raise ValueError(f"{self.waba_id}: label_sets must not be negative")
        if any(weight <= 0 for _, weight in self.countries):
            raise ValueError(f"{self.waba_id}: country weights must be positive")
        # Local midnights must fall on half-hour boundaries, so a day is whole buckets.
        if self.utc_offset_minutes % 30:
            raise ValueError(f"{self.waba_id}: utc_offset_minutes must be a multiple of 30")


@dataclass(frozen=True, slots=True)
class Combo:
    """One label set of an account's traffic; field names are the point keys of DIMENSIONS."""

    conversation_category: str
    conversation_direction: str
    conversation_type: str
    country: str
    phone_number: str
    base_rate: float
    """Conversations per half hour at the daily peak, before noise."""


DEMO_ACCOUNTS: tuple[SimAccount, ...] = (
    SimAccount(
        waba_id="115344761664057",
        name="acme-india",
        customer_id=None,
        phone_numbers=("912240289385", "919820045512", "918046121873"),
        countries=(("IN", 70.0), ("AE", 9.0), ("KW", 6.0), ("US", 5.0), ("GB", 3.0)),
        utc_offset_minutes=330,
        peak_volume=320.0,
    ),
    SimAccount(
        waba_id="104729385610442",
        name="globex-brasil",
        customer_id=None,
        phone_numbers=("551140028922", "5521987650143"),
        countries=(("BR", 85.0), ("PT", 6.0), ("US", 4.0), ("AR", 3.0)),
        utc_offset_minutes=-180,
        peak_volume=180.0,
    ),
    SimAccount(
        waba_id="228810935517306",
        name="kopi-nusantara",
        customer_id=None,
        phone_numbers=("6281234567890", "6281398760021"),
        countries=(("ID", 80.0), ("MY", 10.0), ("SG", 6.0)),
        utc_offset_minutes=420,
        peak_volume=60.0,
    ),
    SimAccount(
        waba_id="309876543210987",
        name="gulf-retail",
        customer_id="cus_8f2a",
        phone_numbers=("96550012345", "971501234567"),
        countries=(("KW", 45.0), ("AE", 30.0), ("SA", 15.0), ("EG", 6.0), ("IN", 4.0)),
        utc_offset_minutes=180,
        peak_volume=240.0,
    ),
)

# (category, direction, type, share of the account's volume, how many (phone, country) pairs
# carry it). Shares add up to 1. The shape follows real accounts: marketing and utility are
# business initiated, service is user initiated, free entry points come from click-to-WhatsApp
# ads, and a sliver of traffic is UNKNOWN, as real answers show.
_TEMPLATES: tuple[tuple[str, str, str, float, int], ...] = (
    ("MARKETING", "BUSINESS_INITIATED", "REGULAR", 0.28, 8),
    ("MARKETING_LITE", "BUSINESS_INITIATED", "REGULAR", 0.05, 3),
    ("UTILITY", "BUSINESS_INITIATED", "REGULAR", 0.18, 6),
    ("AUTHENTICATION", "BUSINESS_INITIATED", "REGULAR", 0.10, 4),
    ("AUTHENTICATION_INTERNATIONAL", "BUSINESS_INITIATED", "REGULAR", 0.03, 2),
    ("SERVICE", "USER_INITIATED", "REGULAR", 0.16, 6),
    ("SERVICE", "USER_INITIATED", "FREE_TIER", 0.10, 4),
    ("SERVICE", "USER_INITIATED", "FREE_ENTRY_POINT", 0.05, 3),
    ("MARKETING", "USER_INITIATED", "FREE_ENTRY_POINT", 0.03, 2),
    ("SERVICE", "UNKNOWN", "UNKNOWN", 0.015, 1),
    ("UTILITY", "UNKNOWN", "REGULAR", 0.005, 1),
)


def _units(*parts: object) -> tuple[float, float]:
    """Two independent uniform numbers in [0, 1) derived from `parts`, stable across runs."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()
    return (
        int.from_bytes(digest[:8], "little") / 2**64,
        int.from_bytes(digest[8:], "little") / 2**64,
    )


@cache
def combos(account: SimAccount) -> tuple[Combo, ...]:
    """The account's fixed set of label sets, each with its peak rate.

    Each template goes to the (phone, country) pairs with the most weight, jittered by a hash so
    that the accounts do not all look alike; its share is split among them by that weight.
    A scaled account (`label_sets` > 0) gets exactly that many instead (`_scaled_combos`).
    """
    if account.label_sets:
        return _scaled_combos(account)
    result: list[Combo] = []
    for category, direction, type_, share, count in _TEMPLATES:
        weighted = []
        for rank, phone in enumerate(account.phone_numbers):
            for country, country_weight in account.countries:
                jitter, _ = _units(account.waba_id, category, direction, type_, phone, country)
                weighted.append((country_weight / (rank + 1) * (0.25 + jitter), phone, country))
        weighted.sort(reverse=True)
        chosen = weighted[:count]
        total = sum(weight for weight, _, _ in chosen)
        result.extend(
            Combo(
                category,
                direction,
                type_,
                country,
                phone,
                account.peak_volume * share * weight / total,
            )
            for weight, phone, country in chosen
        )
    return tuple(result)


def _template_counts(label_sets: int) -> list[int]:
    """`label_sets` split over `_TEMPLATES` by share (largest remainder: the counts add up)."""
    exact = [share * label_sets for *_, share, _ in _TEMPLATES]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: label_sets - sum(counts)]:
        counts[i] += 1
    return counts


def _scaled_combos(account: SimAccount) -> tuple[Combo, ...]:
    """Exactly `account.label_sets` label sets, for benchmarks at a chosen cardinality.

    Each template takes its share of the label sets, on (phone, country) pairs in an order
    shuffled by a hash (so templates and accounts differ), and every label set carries between
    half and one and a half times `peak_volume / label_sets` at the daily peak. With the volume
    `scaled_accounts` gives, that is about 100 conversations per half hour: non-zero in nearly
    every bucket even at night, so every label set shows up in any lookback window.
    """
    pairs = [
        (phone, country) for phone in account.phone_numbers for country, _ in account.countries
    ]
    per_label_set = account.peak_volume / account.label_sets
    result: list[Combo] = []
    for (category, direction, type_, _, _), count in zip(
        _TEMPLATES, _template_counts(account.label_sets), strict=True
    ):
        if count > len(pairs):
            raise ValueError(f"{account.waba_id}: too few phones and countries for the label sets")

        def order(pair: tuple[str, str], template: tuple[str, ...] = (category, direction, type_)):
            return _units(account.waba_id, *template, *pair)[0]

        for phone, country in sorted(pairs, key=order)[:count]:
            jitter, _ = _units(account.waba_id, category, direction, type_, phone, country, "rate")
            result.append(
                Combo(category, direction, type_, country, phone, per_label_set * (0.5 + jitter))
            )
    return tuple(result)


SCALED_COUNTRIES = (
    "IN", "BR", "ID", "MX", "US", "GB", "DE", "ES", "IT", "FR", "AE", "SA", "KW", "EG", "NG",
    "ZA", "KE", "TR", "PK", "BD", "PH", "MY", "SG", "TH", "VN", "AR", "CO", "CL", "PE", "PT",
)  # fmt: skip
"""Two-letter country codes for scaled accounts, most WhatsApp-heavy markets first."""

_SCALED_OFFSETS = (330, -180, 420, 180, 0, 60, -300, 480, 240, -360)
SCALED_RATE_PER_LABEL_SET = 100.0
"""Conversations per half hour of one scaled label set at the daily peak (on average)."""


def scaled_accounts(count: int, label_sets_per_account: int) -> tuple[SimAccount, ...]:
    """`count` synthetic accounts with exactly `label_sets_per_account` label sets each.

    For benchmarks at a chosen cardinality: with all five dimensions enabled, the exporter
    shows `count * label_sets_per_account` label sets. Deterministic: the same arguments give
    the same accounts, 15-digit WABA ids (distinct), 12-digit phone numbers, two-letter
    countries and the real category, direction and type values of `_TEMPLATES`; just enough
    phones and countries for the largest template's share. Names are `bench-00000`, ...
    """
    if count < 0 or label_sets_per_account < 1:
        raise ValueError("count must be >= 0 and label_sets_per_account >= 1")
    widest = max(_template_counts(label_sets_per_account))
    countries = min(len(SCALED_COUNTRIES), max(1, math.isqrt(widest - 1) + 1))
    phones = -(-widest // countries)
    accounts = []
    for i in range(count):
        # i * a mod m is one-to-one for i < m when a and m are coprime: distinct ids.
        waba_id = str(100_000_000_000_000 + i * 7_919_357_011 % 900_000_000_000_000)
        phone_numbers = tuple(
            "91" + str(7_000_000_000 + int(_units(waba_id, "phone", j)[0] * 2_999_999_999))
            for j in range(phones)
        )
        if len(set(phone_numbers)) != phones:  # a hash collision: fall back to a sequence
            phone_numbers = tuple(f"91{7_000_000_000 + j:010d}" for j in range(phones))
        accounts.append(
            SimAccount(
                waba_id=waba_id,
                name=f"bench-{i:05d}",
                customer_id=None,
                phone_numbers=phone_numbers,
                countries=tuple(
                    (code, float(countries - k))
                    for k, code in enumerate(SCALED_COUNTRIES[:countries])
                ),
                utc_offset_minutes=_SCALED_OFFSETS[i % len(_SCALED_OFFSETS)],
                peak_volume=SCALED_RATE_PER_LABEL_SET * label_sets_per_account,
                label_sets=label_sets_per_account,
            )
        )
    return tuple(accounts)


@dataclass(frozen=True, slots=True)
class Campaign:
    """A burst of business-initiated conversations of one category, as a campaign send causes.

    Every bucket of account `waba_id` that starts in `[start, end)` (`end` None: no end) gets
    `extra_per_half_hour` more conversations before rounding, spread over the account's
    business-initiated combos of `category` in proportion to their base rates. A campaign does
    not follow the daily curve: it goes out when it is sent. No campaign, no change: every count
    without one is exactly what it was.
    """

    waba_id: str
    start: int
    end: int | None
    extra_per_half_hour: float
    category: str = "MARKETING"

    def covers(self, account: SimAccount, bucket_start: int) -> bool:
        return (
            account.waba_id == self.waba_id
            and self.start <= bucket_start
            and (self.end is None or bucket_start < self.end)
        )


def _campaign_rate(
    account: SimAccount, combo: Combo, bucket_start: int, campaigns: tuple[Campaign, ...]
) -> float:
    """Extra conversations (before rounding) that running campaigns add to `combo`'s bucket."""
    extra = 0.0
    for campaign in campaigns:
        if (
            combo.conversation_category != campaign.category
            or combo.conversation_direction != "BUSINESS_INITIATED"
            or not campaign.covers(account, bucket_start)
        ):
            continue
        carriers = sum(
            c.base_rate
            for c in combos(account)
            if c.conversation_category == campaign.category
            and c.conversation_direction == "BUSINESS_INITIATED"
        )
        extra += campaign.extra_per_half_hour * combo.base_rate / carriers
    return extra


def daily_curve(account: SimAccount, bucket_start: int) -> float:
    """Relative volume of a half hour: 1 at 15:00 local time, 0.03 at 03:00 local time."""
    local_seconds = bucket_start + HALF_HOUR_SECONDS / 2 + account.utc_offset_minutes * 60
    hour = (local_seconds % DAY_SECONDS) / 3600
    phase = 0.5 * (1 - math.cos(2 * math.pi * (hour - 3) / 24))
    # Squared so that the night is long and quiet, as on real business lines.
    return 0.03 + 0.97 * phase**2


def final_count(
    account: SimAccount,
    combo: Combo,
    bucket_start: int,
    campaigns: tuple[Campaign, ...] = (),
) -> int:
    """Conversations of `combo` in the half hour at `bucket_start`, once Meta's count settled."""
    if bucket_start % HALF_HOUR_SECONDS:
        raise ValueError(f"bucket_start {bucket_start} is not on a half-hour boundary")
    noise, dither = _units(
        account.waba_id,
        combo.conversation_category,
        combo.conversation_direction,
        combo.conversation_type,
        combo.country,
        combo.phone_number,
        bucket_start,
    )
    expected = combo.base_rate * daily_curve(account, bucket_start) * (0.6 + 0.8 * noise)
    if campaigns:
        expected += _campaign_rate(account, combo, bucket_start, campaigns)
    # Dithered rounding keeps small combos' averages right: a 0.3 rate is 1 in 30% of buckets.
    return math.floor(expected + dither)


def observed_count(
    account: SimAccount,
    combo: Combo,
    bucket_start: int,
    as_of: float,
    *,
    late_seconds: float = 0.0,
    late_fraction: float = 0.0,
    campaigns: tuple[Campaign, ...] = (),
) -> int:
    """What the upstream reports at `as_of` for one half hour of one combo.

    A bucket that has not started does not exist (0). A bucket in progress reports the elapsed
    share of its final count. With the late-data knob on (`late_seconds` > 0), a bucket that
    ended less than `late_seconds` ago, or is still in progress, reports only
    `1 - late_fraction` of that, so counts only ever grow as time passes, as Meta's revisions do.
    """
    if bucket_start >= as_of:
        return 0
    bucket_end = bucket_start + HALF_HOUR_SECONDS
    settled = 1.0
    if late_seconds > 0 and as_of - bucket_end < late_seconds:
        settled = 1.0 - late_fraction
    final = final_count(account, combo, bucket_start, campaigns)
    if as_of < bucket_end:
        return math.floor(final * settled * (as_of - bucket_start) / HALF_HOUR_SECONDS)
    return math.floor(final * settled)


def _periods(account: SimAccount, granularity: str, start: int, stop: float) -> Iterator[int]:
    """Starts of the periods that begin at or after `start` and before `stop`, oldest first.

    HALF_HOUR periods fall on :00 and :30 UTC; DAILY and MONTHLY ones on local midnights of the
    account's time zone, as the upstream's do.
    """
    offset = account.utc_offset_minutes * 60
    if granularity == "HALF_HOUR":
        first = -(-start // HALF_HOUR_SECONDS) * HALF_HOUR_SECONDS
        yield from range(first, math.ceil(stop), HALF_HOUR_SECONDS)
    elif granularity == "DAILY":
        first = -(-(start + offset) // DAY_SECONDS) * DAY_SECONDS - offset
        yield from range(first, math.ceil(stop), DAY_SECONDS)
    elif granularity == "MONTHLY":
        period = _month_start(account, start)
        if period < start:
            period = _next_month(account, period)
        while period < stop:
            yield period
            period = _next_month(account, period)
    else:
        raise ValueError(f"unknown granularity {granularity!r}")


def _period_end(account: SimAccount, granularity: str, period_start: int) -> int:
    if granularity == "HALF_HOUR":
        return period_start + HALF_HOUR_SECONDS
    if granularity == "DAILY":
        return period_start + DAY_SECONDS
    return _next_month(account, period_start)


def _month_start(account: SimAccount, timestamp: int) -> int:
    zone = timezone(timedelta(minutes=account.utc_offset_minutes))
    local = datetime.fromtimestamp(timestamp, zone)
    return int(local.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


def _next_month(account: SimAccount, month_start: int) -> int:
    # 32 days after the first of a month is always inside the next month.
    return _month_start(account, month_start + 32 * DAY_SECONDS)


def _matches(combo: Combo, query: AnalyticsQuery) -> bool:
    """Whether a combo passes the query's filters (an empty filter passes everything).

    Filter values are matched exactly after FREE_ENTRY -> FREE_ENTRY_POINT, so a category filter
    never matches MARKETING_LITE or AUTHENTICATION_INTERNATIONAL, nor a type or direction filter
    UNKNOWN: none of them can be written in a filter.
    """
    filters = (
        (query.phone_numbers, combo.phone_number),
        (query.conversation_categories, combo.conversation_category),
        (query.conversation_types, combo.conversation_type),
        (query.conversation_directions, combo.conversation_direction),
    )
    return all(
        not wanted or value in {FILTER_TO_ANSWER_VALUE.get(w, w) for w in wanted}
        for wanted, value in filters
    )


def answer_points(
    account: SimAccount,
    query: AnalyticsQuery,
    as_of: float,
    *,
    late_seconds: float = 0.0,
    late_fraction: float = 0.0,
    campaigns: tuple[Campaign, ...] = (),
) -> list[Point]:
    """The data points the upstream answers for `query` at time `as_of`, newest first.

    Periods run from the first boundary at or after `query.start` while they start before
    `min(query.end, as_of)`; a period is counted whole up to `as_of` even when it outlasts
    `query.end`. Counts are summed over the dimensions not asked for, and a label set with no
    conversations in a period is left out. Within a period, points are sorted by label values.

    DAILY and MONTHLY are answered too: each period sums the half hours from one local midnight
    of the account's time zone to the next (or to the next first of a month), so their `start`
    is e.g. 18:30 UTC for an IST account, as in the API page's example.

    `metric_types` without CONVERSATION yields nothing: cost is not returned to partner-billed
    accounts, so such a query has no data.
    """
    if query.metric_types and "CONVERSATION" not in query.metric_types:
        return []
    selected = [combo for combo in combos(account) if _matches(combo, query)]
    requested = set(query.dimensions)
    keys = [d.point_key for d in DIMENSIONS if d.api_name in requested]
    stop = min(query.end, as_of)
    newest_first: list[Point] = []
    for period_start in reversed(list(_periods(account, query.granularity, query.start, stop))):
        period_end = _period_end(account, query.granularity, period_start)
        buckets = range(period_start, min(period_end, math.ceil(as_of)), HALF_HOUR_SECONDS)
        totals: dict[tuple[str, ...], int] = {}
        for combo in selected:
            count = sum(
                observed_count(
                    account,
                    combo,
                    bucket,
                    as_of,
                    late_seconds=late_seconds,
                    late_fraction=late_fraction,
                    campaigns=campaigns,
                )
                for bucket in buckets
            )
            if count:
                labels = tuple(str(getattr(combo, key)) for key in keys)
                totals[labels] = totals.get(labels, 0) + count
        for labels in sorted(totals):
            point: Point = {
                "start": period_start,
                "end": period_end,
                "conversation": totals[labels],
            }
            point.update(zip(keys, labels, strict=True))
            newest_first.append(point)
    return newest_first
