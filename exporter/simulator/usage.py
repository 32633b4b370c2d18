"""The rate-budget headers the simulated upstream sends, as Meta words them.

Every answer for a known account carries both headers:

- `X-Business-Use-Case-Usage`: the account's (WABA's) share of its hourly budget,
  `{"<waba id>": [{"type": "whatsapp_business_management", "call_count": 6,
  "total_cputime": 2, "total_time": 4, "estimated_time_to_regain_access": 0}]}`;
- `X-App-Usage`: the app's share, over all accounts, `{"call_count": 3, "total_cputime": 1,
  "total_time": 2}`.

`call_count` follows the requests of the last hour against `CALLS_PER_HOUR` per account. CPU
and time follow the calls (analytics reads are heavier than the average call, so time runs
ahead of CPU), and faults push them up the way a struggling or throttled upstream does: a slow
answer spends time, a 5xx spends CPU and time, and a rate limit shows its budget spent (the
app's for Graph code 4, the account's for the others and for 429). A rate limit announces
`estimated_time_to_regain_access` only when the fault asks for it (`regain_minutes`), so that
tests choose between a back-off and a pause.
"""

from __future__ import annotations

import json
import threading
from collections import deque

CALLS_PER_HOUR = 200
"""The Business Management API budget per WABA, which `call_count` is a percentage of."""
HOUR = 3600.0
APP_RATE_LIMIT_CODES = frozenset({4})
"""Graph codes that say the app, not the account, ran out of budget."""
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 130429})


def _percentages(calls: int, budget: int) -> dict[str, int]:
    share = calls * 100 // max(1, budget)
    return {
        "call_count": min(100, share),
        "total_cputime": min(100, share // 3 + 1),
        "total_time": min(100, share * 2 // 3 + 1),
    }


def _pushed(usage: dict[str, int], kind: str | None, throttled: bool) -> dict[str, int]:
    """`usage` as a fault of `kind` leaves it."""
    if throttled:
        return {
            "call_count": max(100, usage["call_count"]),
            "total_cputime": max(91, usage["total_cputime"]),
            "total_time": max(96, usage["total_time"]),
        }
    pushed = dict(usage)
    if kind == "slow":
        pushed["total_time"] = min(100, pushed["total_time"] + 50)
    elif kind in ("status", "graph_error"):
        pushed["total_cputime"] = min(100, pushed["total_cputime"] + 20)
        pushed["total_time"] = min(100, pushed["total_time"] + 30)
    return pushed


class UsageMeter:
    """Counts each account's requests of the last hour, and says what the headers read."""

    def __init__(self, accounts: int) -> None:
        self._accounts = max(1, accounts)
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}
        self._app_calls: deque[float] = deque()

    def record(self, waba_id: str, now: float) -> None:
        with self._lock:
            self._calls.setdefault(waba_id, deque()).append(now)
            self._app_calls.append(now)

    def _count(self, times: deque[float], now: float) -> int:
        while times and times[0] <= now - HOUR:
            times.popleft()
        # Times from a clock that went back stay counted until they age out.
        return len(times)

    def headers(
        self,
        waba_id: str,
        now: float,
        *,
        kind: str | None = None,
        http_status: int = 200,
        code: int = 0,
        regain_minutes: int = 0,
    ) -> dict[str, str]:
        """Both headers for an answer to `waba_id` at `now`; `kind`, `http_status` and `code`
        describe the fault the answer took (kind None: none)."""
        with self._lock:
            calls = self._count(self._calls.setdefault(waba_id, deque()), now)
            app_calls = self._count(self._app_calls, now)
        rate_limited = kind == "rate_limited" or (
            kind == "graph_error" and code in RATE_LIMIT_CODES
        )
        app_throttled = rate_limited and code in APP_RATE_LIMIT_CODES
        account_throttled = rate_limited and not app_throttled
        if kind == "status" and http_status == 429:
            account_throttled = True
        account = _pushed(_percentages(calls, CALLS_PER_HOUR), kind, account_throttled)
        app = _pushed(
            _percentages(app_calls, CALLS_PER_HOUR * self._accounts),
            None if account_throttled else kind,
            app_throttled,
        )
        business = {
            "type": "whatsapp_business_management",
            **account,
            "estimated_time_to_regain_access": regain_minutes if account_throttled else 0,
        }
        if app_throttled and regain_minutes:
            app["estimated_time_to_regain_access"] = regain_minutes
        return {
            "X-Business-Use-Case-Usage": json.dumps({waba_id: [business]}),
            "X-App-Usage": json.dumps(app),
        }
