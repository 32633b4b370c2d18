"""The exporter's command line with its data clock running fast, for tests of real processes.

    python -m tests.fastclock SPEED ORIGIN REAL_ORIGIN [exporter flags...]

The clock reads ORIGIN + (time.time() - REAL_ORIGIN) * SPEED: the same function of the wall
clock in every process given the same three numbers, so a simulator in the test process and
exporters started and killed one after another share one fast clock, as the fake-clock tests
share theirs. Only the clock the exporter reads for its data (buckets, windows, timestamps) runs
fast; the scheduler, timeouts and HTTP keep real time. Everything else is the real command line:
flags, the state file, the lock, signals and exit codes.
"""

from __future__ import annotations

import sys
import time


class FastClock:
    def __init__(self, speed: float, origin: float, real_origin: float) -> None:
        self.speed, self.origin, self.real_origin = speed, origin, real_origin

    def __call__(self) -> float:
        return self.origin + (time.time() - self.real_origin) * self.speed

    def argv(self) -> list[str]:
        return [repr(self.speed), repr(self.origin), repr(self.real_origin)]


def main(argv: list[str]) -> int:
    clock = FastClock(*(float(a) for a in argv[:3]))
    from exporter import app, cli

    real_init = app.Exporter.__init__

    def fast_init(self, config, **options) -> None:  # type: ignore[no-untyped-def]
        real_init(self, config, **{**options, "clock": clock})

    app.Exporter.__init__ = fast_init  # type: ignore[method-assign]
    return cli.main(argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
