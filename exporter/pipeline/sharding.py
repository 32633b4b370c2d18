"""Scale-out: several replicas share the targets by a stable hash of each target's id.

Every replica reads the same config file and is told its shard (`--shard 1/3` or `shard:` in
the file); it keeps only the targets whose id hashes to its index. The rest of the exporter
never knows: it receives a `Config` whose `targets` are this replica's.

The hash must give the same answer in every process, on every machine and in every Python
version, or two replicas would disagree about who owns a target and poll it twice or not at
all. Python's `hash()` is salted per process (PYTHONHASHSEED), so SHA-256 is used instead.
The id (`waba_id` or `customer_id`) is hashed, not the name, so renaming a target does not
move it to another replica (which would restart its counter there).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable

from exporter.config.model import Config, Shard, Target

# Bounded so that int() never meets Python's limit on the length of integer strings.
_SHARD = re.compile(r"([0-9]{1,9})/([0-9]{1,9})")


def parse_shard(text: str) -> Shard:
    """`INDEX/TOTAL`, e.g. `1/3`; raises ValueError with one line that says what is wrong."""
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected INDEX/TOTAL such as 0/2 or 1/2, got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def shard_from_flag(text: str | None) -> Shard | None:
    """The shard `--shard` names, None when it was not given; the ValueError names the flag."""
    if text is None:
        return None
    try:
        return parse_shard(text)
    except ValueError as error:
        raise ValueError(f"--shard: {error}") from None


def shard_of(target_id: str, total: int) -> int:
    """The index (0 to total - 1) of the shard that owns `target_id`, the same in every process.

    Modulo of a 64-bit hash: the bias towards low indexes is below total / 2**64, nothing.
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"total must be an integer of at least 1, got {total!r}")
    digest = hashlib.sha256(target_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % total


def target_id(target: Target) -> str:
    """What is hashed: the `waba_id` or `customer_id`, never the name."""
    return target.upstream_id


def owned_targets(targets: Iterable[Target], shard: Shard) -> tuple[Target, ...]:
    """The targets that `shard` polls, in their config order."""
    return tuple(t for t in targets if shard_of(target_id(t), shard.total) == shard.index)


def shard_config(config: Config, shard: Shard) -> Config:
    """`config` as replica `shard` runs it: only its targets, and `shard` recorded.

    Meant for a config as loaded (every target). Applying the same shard again changes nothing;
    applying another one to an already sharded config would lose targets.
    """
    return dataclasses.replace(config, targets=owned_targets(config.targets, shard), shard=shard)
