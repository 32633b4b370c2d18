"""What the simulated upstream answers for `pricing_analytics` and message `analytics`.

Both are derived from the conversation traffic of `traffic.py`, so the three fields of one
request tell one story:

- Every conversation is opened by a message and carries a few more: message volume per half
  hour is the conversation count plus a share of it (a hash per label set and bucket decides
  the share), so marketing messages are never fewer than the marketing conversations they
  open, and a campaign (`traffic.Campaign`) shows in both.
- Pricing follows Meta's per-message rules: service traffic is FREE_CUSTOMER_SERVICE, traffic
  from click-to-WhatsApp entry points FREE_ENTRY_POINT (marketing ones as REFERRAL_CONVERSION),
  part of the utility messages fall inside an open service window (free), the rest is
  REGULAR. Utility and authentication carry the account's volume tier (`0:25000`, ...).
- `cost` (in the account's currency) is answered only for accounts billed directly: a partner
  customer (the accounts with a `customer_id`) gets volume without cost, as Splashify's do.
- Message analytics count the business's messages: `delivered` is the pricing volume of the
  same half hour, `sent` a few percent more (never fewer than delivered).

Counts only grow as time passes (each is a monotone function of a conversation count, which only
grows), so the late-data knob behaves as for conversations. Everything is a pure function of
(account, query, as_of), like `traffic.answer_points`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache

from exporter.simulator.traffic import (
    DAY_SECONDS,
    Campaign,
    Combo,
    SimAccount,
    _units,
    combos,
    observed_count,
)
from exporter.upstream.query import FieldQuery
from exporter.vocabulary import (
    COUNTRY_CODES,
    HALF_HOUR_SECONDS,
    MESSAGE_ANALYTICS,
    PRICING_ANALYTICS,
    SOURCES_BY_NAME,
)

Point = dict[str, int | str | float]
"""One data point as the upstream sends it (`cost` is a decimal amount)."""

PRICING = SOURCES_BY_NAME[PRICING_ANALYTICS]
MESSAGES = SOURCES_BY_NAME[MESSAGE_ANALYTICS]

# Messages per conversation beyond the one that opens it: (lowest, highest) extra share.
_EXTRA_MESSAGES = {
    "MARKETING": (0.0, 0.4),
    "MARKETING_LITE": (0.0, 0.3),
    "UTILITY": (0.2, 1.0),
    "AUTHENTICATION": (0.0, 0.1),
    "AUTHENTICATION_INTERNATIONAL": (0.0, 0.1),
    "SERVICE": (1.0, 3.0),
}
_DEFAULT_EXTRA = (0.0, 0.5)

UTILITY_IN_WINDOW = (0.2, 0.4)
"""Share of utility messages sent inside an open customer-service window (free)."""

UNDELIVERED = (0.01, 0.05)
"""Share of sent messages that are never delivered, per account and half hour."""

TIERED = frozenset({"UTILITY", "AUTHENTICATION", "AUTHENTICATION_INTERNATIONAL"})
"""Categories billed by volume tier."""

_TIERS = ((25_000, "0:25000"), (100_000, "25001:100000"), (500_000, "100001:500000"))
_TOP_TIER = "500001:"

# Rate per REGULAR message, in the account's currency, before the country factor.
_RATES = {
    "MARKETING": 0.025,
    "MARKETING_LITE": 0.02,
    "UTILITY": 0.004,
    "AUTHENTICATION": 0.0035,
    "AUTHENTICATION_INTERNATIONAL": 0.028,
}
_DEFAULT_RATE = 0.01

TEMPLATE_PRODUCT = "0"
SUPPORT_PRODUCT = "2"


@dataclass(frozen=True, slots=True)
class _Priced:
    """One pricing label set fed by one conversation combo (a combo may feed two: utility
    inside and outside the service window)."""

    combo: Combo
    pricing_category: str
    pricing_type: str
    tier: str | None
    in_window: bool | None
    """Utility only: True for the free share, False for the billed rest; None otherwise."""

    @property
    def country(self) -> str:
        return self.combo.country

    @property
    def phone_number(self) -> str:
        return self.combo.phone_number

    @property
    def product_type(self) -> str:
        free_support = self.pricing_category in ("SERVICE", "REFERRAL_CONVERSION")
        return SUPPORT_PRODUCT if free_support else TEMPLATE_PRODUCT


def account_tier(account: SimAccount) -> str:
    """The account's volume tier this month, from its typical monthly volume."""
    monthly = account.peak_volume * 0.4 * 48 * 30
    for ceiling, tier in _TIERS:
        if monthly <= ceiling:
            return tier
    return _TOP_TIER


def billed_directly(account: SimAccount) -> bool:
    """Partner customers are billed by the partner: their answers carry no cost."""
    return account.customer_id is None


@cache
def priced(account: SimAccount) -> tuple[_Priced, ...]:
    """The pricing label sets of an account's conversation combos."""
    tier = account_tier(account)
    result: list[_Priced] = []
    for combo in combos(account):
        category = combo.conversation_category
        if combo.conversation_type == "FREE_ENTRY_POINT":
            referral = "REFERRAL_CONVERSION" if category.startswith("MARKETING") else category
            result.append(_Priced(combo, referral, "FREE_ENTRY_POINT", None, None))
        elif category == "SERVICE":
            result.append(_Priced(combo, "SERVICE", "FREE_CUSTOMER_SERVICE", None, None))
        elif category == "UTILITY":
            result.append(_Priced(combo, "UTILITY", "FREE_CUSTOMER_SERVICE", None, True))
            result.append(_Priced(combo, "UTILITY", "REGULAR", tier, False))
        else:
            tiered = tier if category in TIERED else None
            result.append(_Priced(combo, category, "REGULAR", tiered, None))
    return tuple(result)


def _combo_key(account: SimAccount, combo: Combo) -> tuple[str, ...]:
    return (
        account.waba_id,
        combo.conversation_category,
        combo.conversation_direction,
        combo.conversation_type,
        combo.country,
        combo.phone_number,
    )


def messages_of(account: SimAccount, combo: Combo, bucket_start: int, conversations: int) -> int:
    """Messages of `combo` in a half hour with `conversations` conversations: at least one each.

    Monotone in `conversations`, so a revised (higher) count never means fewer messages.
    """
    if conversations <= 0:
        return 0
    low, high = _EXTRA_MESSAGES.get(combo.conversation_category, _DEFAULT_EXTRA)
    share, dither = _units(*_combo_key(account, combo), bucket_start, "messages")
    return conversations + math.floor(conversations * (low + (high - low) * share) + dither)


def _split(messages: int, share_range: tuple[float, float], *parts: object) -> int:
    """The part of `messages` a share from `share_range` takes (monotone in `messages`)."""
    low, high = share_range
    share, dither = _units(*parts)
    return min(messages, math.floor(messages * (low + (high - low) * share) + dither))


def priced_volume(account: SimAccount, item: _Priced, bucket_start: int, messages: int) -> int:
    """Messages of the combo's `messages` that fall under `item`'s pricing label set."""
    if item.in_window is None:
        return messages
    key = _combo_key(account, item.combo)
    free = _split(messages, UTILITY_IN_WINDOW, *key, bucket_start, "window")
    return free if item.in_window else messages - free


def rate(account: SimAccount, item: _Priced) -> float:
    """Price of one message of `item` (0 for the free types)."""
    if item.pricing_type != "REGULAR":
        return 0.0
    factor, _ = _units("rate", account.waba_id, item.country)
    return _RATES.get(item.pricing_category, _DEFAULT_RATE) * (0.4 + 2.1 * factor)


# -- periods ------------------------------------------------------------------------------------


_DAILY = ("DAILY", "DAY")
_MONTHLY = ("MONTHLY", "MONTH")


def _month_start(timestamp: int) -> int:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return int(moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


def periods(granularity: str, start: int, stop: float) -> Iterator[tuple[int, int]]:
    """(start, end) of the periods that begin at or after `start` and before `stop`, newest
    first. Pricing and message analytics count in UTC, whatever the account's time zone."""
    if granularity in _DAILY:
        step = DAY_SECONDS
    elif granularity == "HALF_HOUR":
        step = HALF_HOUR_SECONDS
    elif granularity in _MONTHLY:
        starts: list[int] = []
        period = _month_start(start)
        if period < start:
            period = _month_start(period + 32 * DAY_SECONDS)
        while period < stop:
            starts.append(period)
            period = _month_start(period + 32 * DAY_SECONDS)
        for i in reversed(range(len(starts))):
            yield starts[i], _month_start(starts[i] + 32 * DAY_SECONDS)
        return
    else:
        raise ValueError(f"unknown granularity {granularity!r}")
    first = -(-start // step) * step
    for period in reversed(range(first, math.ceil(stop), step)):
        yield period, period + step


# -- answers ------------------------------------------------------------------------------------


def _passes(item: _Priced, query: FieldQuery) -> bool:
    checks = (
        ("phone_numbers", item.phone_number),
        (COUNTRY_CODES, item.country),
        ("pricing_categories", item.pricing_category),
        ("pricing_types", item.pricing_type),
        ("product_types", item.product_type),
    )
    return all(not query.values(name) or value in query.values(name) for name, value in checks)


def _volumes(
    account: SimAccount,
    query: FieldQuery,
    as_of: float,
    *,
    late_seconds: float,
    late_fraction: float,
    campaigns: tuple[Campaign, ...],
) -> Iterator[tuple[int, int, list[tuple[_Priced, int, int]]]]:
    """Per period, newest first: (start, end, [(pricing item, bucket start, volume)])."""
    selected = [item for item in priced(account) if _passes(item, query)]
    for period_start, period_end in periods(query.granularity, query.start, min(query.end, as_of)):
        rows: list[tuple[_Priced, int, int]] = []
        for bucket in range(period_start, min(period_end, math.ceil(as_of)), HALF_HOUR_SECONDS):
            conversations: dict[Combo, int] = {}
            for item in selected:
                count = conversations.get(item.combo)
                if count is None:
                    count = conversations[item.combo] = messages_of(
                        account,
                        item.combo,
                        bucket,
                        observed_count(
                            account,
                            item.combo,
                            bucket,
                            as_of,
                            late_seconds=late_seconds,
                            late_fraction=late_fraction,
                            campaigns=campaigns,
                        ),
                    )
                volume = priced_volume(account, item, bucket, count)
                if volume:
                    rows.append((item, bucket, volume))
        yield period_start, period_end, rows


def pricing_points(
    account: SimAccount,
    query: FieldQuery,
    as_of: float,
    *,
    late_seconds: float = 0.0,
    late_fraction: float = 0.0,
    campaigns: tuple[Campaign, ...] = (),
) -> list[Point]:
    """The `pricing_analytics` data points for `query` at `as_of`, newest first.

    Summed over the dimensions not asked for; a label set with no messages in a period is left
    out. `volume` and `cost` follow `metric_types` (both when it is not given); cost only for
    accounts billed directly.
    """
    metric_types = query.values("metric_types") or ("VOLUME", "COST")
    with_cost = "COST" in metric_types and billed_directly(account)
    with_volume = "VOLUME" in metric_types
    requested = set(query.values("dimensions"))
    keys = [d.point_key for d in PRICING.dimensions if d.api_name in requested]
    points: list[Point] = []
    for period_start, period_end, rows in _volumes(
        account,
        query,
        as_of,
        late_seconds=late_seconds,
        late_fraction=late_fraction,
        campaigns=campaigns,
    ):
        volumes: dict[tuple[str, ...], int] = {}
        costs: dict[tuple[str, ...], float] = {}
        for item, _bucket, volume in rows:
            labels = tuple(_label(item, key) for key in keys)
            volumes[labels] = volumes.get(labels, 0) + volume
            costs[labels] = costs.get(labels, 0.0) + volume * rate(account, item)
        for labels in sorted(volumes):
            point: Point = {"start": period_start, "end": period_end}
            for key, value in zip(keys, labels, strict=True):
                if value:  # a tier only where the category has one
                    point[key] = value
            if with_volume:
                point["volume"] = volumes[labels]
            if with_cost:
                point["cost"] = round(costs[labels], 4)
            if with_volume or with_cost:
                points.append(point)
    return points


def _label(item: _Priced, key: str) -> str:
    if key == "tier":
        return item.tier or ""
    return str(getattr(item, key))


def message_points(
    account: SimAccount,
    query: FieldQuery,
    as_of: float,
    *,
    late_seconds: float = 0.0,
    late_fraction: float = 0.0,
    campaigns: tuple[Campaign, ...] = (),
) -> list[Point]:
    """The message `analytics` data points for `query` at `as_of`, newest first: per period,
    `sent` and `delivered` over the account's (filtered) traffic; quiet periods are left out."""
    points: list[Point] = []
    for period_start, period_end, rows in _volumes(
        account,
        query,
        as_of,
        late_seconds=late_seconds,
        late_fraction=late_fraction,
        campaigns=campaigns,
    ):
        delivered: dict[int, int] = {}
        for _item, bucket, volume in rows:
            delivered[bucket] = delivered.get(bucket, 0) + volume
        total_delivered = sum(delivered.values())
        if not total_delivered:
            continue
        undelivered = sum(
            _split(count, UNDELIVERED, account.waba_id, bucket, "undelivered")
            for bucket, count in delivered.items()
        )
        points.append(
            {
                "start": period_start,
                "end": period_end,
                "sent": total_delivered + undelivered,
                "delivered": total_delivered,
            }
        )
    return points


def field_answers(
    account: SimAccount,
    queries: dict[str, FieldQuery],
    as_of: float,
    *,
    late_seconds: float = 0.0,
    late_fraction: float = 0.0,
    campaigns: tuple[Campaign, ...] = (),
) -> dict[str, object]:
    """The answer's keys for the fields beside conversation_analytics, as the upstream shapes
    them (`pricing_analytics` wrapped in `data[]`, `analytics` flat with its granularity); a
    field with no data is left out."""
    answer: dict[str, object] = {}
    pricing = queries.get(PRICING.field)
    if pricing is not None:
        points = pricing_points(
            account,
            pricing,
            as_of,
            late_seconds=late_seconds,
            late_fraction=late_fraction,
            campaigns=campaigns,
        )
        if points:
            answer[PRICING.field] = {"data": [{"data_points": points}]}
    messages = queries.get(MESSAGES.field)
    if messages is not None:
        points = message_points(
            account,
            messages,
            as_of,
            late_seconds=late_seconds,
            late_fraction=late_fraction,
            campaigns=campaigns,
        )
        if points:
            answer[MESSAGES.field] = {"granularity": messages.granularity, "data_points": points}
    return answer
