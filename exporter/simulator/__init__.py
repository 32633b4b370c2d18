"""A simulated Splashify API on loopback, for the tests, `whatsapp-exporter --demo` and benchmarks.

`Simulator` serves deterministic traffic (`traffic.py`) through the upstream's routes, errors and
quirks (`server.py`), parsing `fields=` as strictly as the upstream (`fields.py`).
"""

from exporter.simulator.fields import FieldsError, parse_fields
from exporter.simulator.server import Fault, RecordedRequest, Simulator
from exporter.simulator.traffic import DEMO_ACCOUNTS, SimAccount, answer_points, scaled_accounts

__all__ = [
    "DEMO_ACCOUNTS",
    "Fault",
    "FieldsError",
    "RecordedRequest",
    "SimAccount",
    "Simulator",
    "answer_points",
    "parse_fields",
    "scaled_accounts",
]
