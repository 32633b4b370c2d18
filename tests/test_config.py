"""The config loader: the documented example, defaults, every rule's exact message, the secret."""

from __future__ import annotations

import copy
import dataclasses
import datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import (
    Config,
    ConfigError,
    Filters,
    ListenAddress,
    PollConfig,
    Secret,
    Shard,
    SplashifyConfig,
    Target,
    WebConfig,
    load_config,
    parse_config,
    parse_duration,
    parse_listen_address,
)

# The example of docs/contract.md, verbatim.
EXAMPLE = """\
splashify:
  base_url: https://api.splashifypro.com   # scheme + host (+ optional path prefix)
  api_version: v25.0
  api_key: ${SPLASHIFY_API_KEY}            # ${VAR} expands from the environment
  # api_key_file: /run/secrets/splashify   # alternative: read the key from a file
  timeout: 10s
  max_retries: 4
  max_concurrency: 8                       # requests in flight at once, over all targets
  requests_per_second: 10                  # client-side ceiling, over all targets

poll:
  interval: 5m        # how often every target is polled
  lookback: 6h        # each poll re-reads this window, so late and revised counts are seen
  delay: 30m          # a half-hour bucket is reported once it ended at least this long ago

dimensions: [CONVERSATION_CATEGORY, CONVERSATION_DIRECTION, CONVERSATION_TYPE, COUNTRY, PHONE]

filters:              # optional, passed through to the API
  conversation_categories: [MARKETING, UTILITY, AUTHENTICATION, SERVICE]
  conversation_types: [REGULAR, FREE_ENTRY, FREE_TIER]
  conversation_directions: [BUSINESS_INITIATED, USER_INITIATED]

targets:
  - waba_id: "115344761664057"     # GET /api/{api_version}/{waba_id}?fields=...
    name: acme                     # optional; defaults to the id
    phone_numbers: ["912240289385"] # optional
  - customer_id: "cus_8f2a"        # GET /api/v1/partner/customers/{customer_id}/whatsapp/analytics/conversations?fields=...
    name: globex

web:
  listen_address: 0.0.0.0:9477
"""  # noqa: E501 - verbatim, long comment included

KEY = "sk_live_0123456789abcdef"
ENV = {"SPLASHIFY_API_KEY": KEY}

# The smallest valid config; error cases add to or change one part of it.
API_KEY = "splashify:\n  api_key: k-123456\n"
TARGET = "targets:\n  - waba_id: '1'\n"
MINIMAL = API_KEY + TARGET


def parse(text: str, environ: dict[str, str] | None = None, base_dir: Path | None = None) -> Config:
    return parse_config(yaml.safe_load(text), environ or {}, base_dir)


def error_of(text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(text, environ)
    return str(caught.value)


def write(folder: Path, text: str, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the example and the defaults ------------------------------------------------------------


def test_contract_example_parses_to_the_expected_objects(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE), ENV)

    assert config == Config(
        splashify=SplashifyConfig(
            api_key=Secret(KEY),
            base_url="https://api.splashifypro.com",
            api_version="v25.0",
            timeout=10.0,
            max_retries=4,
            max_concurrency=8,
            requests_per_second=10.0,
        ),
        poll=PollConfig(interval=300.0, lookback=21600.0, delay=1800.0, stale_after=3600.0),
        dimensions=(
            "CONVERSATION_CATEGORY",
            "CONVERSATION_DIRECTION",
            "CONVERSATION_TYPE",
            "COUNTRY",
            "PHONE",
        ),
        filters=Filters(
            conversation_categories=("AUTHENTICATION", "MARKETING", "SERVICE", "UTILITY"),
            conversation_types=("FREE_ENTRY", "FREE_TIER", "REGULAR"),
            conversation_directions=("BUSINESS_INITIATED", "USER_INITIATED"),
        ),
        targets=(
            Target(name="acme", waba_id="115344761664057", phone_numbers=("912240289385",)),
            Target(name="globex", customer_id="cus_8f2a"),
        ),
        web=WebConfig(listen_address=ListenAddress("0.0.0.0", 9477)),
    )
    assert config.splashify.api_key.reveal() == KEY
    assert [t.upstream_id for t in config.targets] == ["115344761664057", "cus_8f2a"]


def test_the_example_states_the_defaults() -> None:
    """Everything the example sets is also the default, so dropping it changes nothing."""
    example = parse(EXAMPLE, ENV)
    minimal = parse(
        "splashify: {api_key: '${SPLASHIFY_API_KEY}'}\n"
        "targets:\n"
        "  - {waba_id: '115344761664057', name: acme, phone_numbers: ['912240289385']}\n"
        "  - {customer_id: cus_8f2a, name: globex}\n",
        ENV,
    )
    assert minimal == dataclasses.replace(example, filters=Filters())


def test_defaults_with_only_an_api_key_and_one_target() -> None:
    config = parse(MINIMAL)

    assert config == Config(
        splashify=SplashifyConfig(api_key=Secret("k-123456")),
        targets=(Target(name="1", waba_id="1"),),
    )
    assert config.splashify.base_url == "https://api.splashifypro.com"
    assert config.splashify.api_version == "v25.0"
    assert (config.splashify.timeout, config.splashify.max_retries) == (10.0, 4)
    assert config.splashify.max_concurrency == 8
    assert config.splashify.requests_per_second == 10.0
    assert config.poll == PollConfig(
        interval=300.0, lookback=21600.0, delay=1800.0, stale_after=3600.0
    )
    assert config.dimensions == (
        "CONVERSATION_CATEGORY",
        "CONVERSATION_DIRECTION",
        "CONVERSATION_TYPE",
        "COUNTRY",
        "PHONE",
    )
    assert config.filters == Filters()
    assert config.web.listen_address == ListenAddress("0.0.0.0", 9477)


def test_null_sections_and_keys_count_as_not_set() -> None:
    text = MINIMAL + "poll:\nfilters:\nweb:\n  listen_address:\ndimensions:\nshard:\n"
    assert parse(text) == parse(MINIMAL)


def test_no_shard_means_every_target() -> None:
    assert parse(MINIMAL).shard == Shard(0, 1)
    assert parse(MINIMAL + "shard: {index: null, total: null}\n").shard == Shard(0, 1)


def test_a_shard_is_read_and_the_loader_still_keeps_every_target() -> None:
    # The targets are filtered where the --shard flag is known (the CLI), not here.
    config = parse(targets("{waba_id: '1'}", "{waba_id: '2'}") + "shard: {index: 1, total: 3}\n")
    assert config.shard == Shard(1, 3)
    assert [t.waba_id for t in config.targets] == ["1", "2"]


def test_shard_numbers_may_come_from_variables() -> None:
    text = MINIMAL + "shard:\n  index: ${SHARD_INDEX}\n  total: '${SHARD_TOTAL}'\n"
    assert parse(text, {"SHARD_INDEX": "2", "SHARD_TOTAL": "4"}).shard == Shard(2, 4)


def test_a_customer_target_is_named_after_its_id() -> None:
    config = parse(API_KEY + "targets:\n  - customer_id: cus_1\n")
    assert config.targets == (Target(name="cus_1", customer_id="cus_1"),)


def test_config_is_frozen() -> None:
    config = parse(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.poll = PollConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.splashify.timeout = 1.0  # type: ignore[misc]


# --- values that are accepted in more than one spelling --------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("splashify: {api_key: k-123456, base_url: 'http://localhost:8080/'}", "http://localhost:8080"),
        (
            "splashify: {api_key: k-123456, base_url: 'https://h.example/api/v1//'}",
            "https://h.example/api/v1",
        ),
        ("splashify: {api_key: k-123456, base_url: 'HTTPS://h.example'}", "https://h.example"),
        ("splashify: {api_key: k-123456, base_url: 'http://[::1]:9/p'}", "http://[::1]:9/p"),
    ],
)
def test_base_url_is_kept_without_trailing_slash(text: str, expected: str) -> None:
    assert parse(text + "\n" + TARGET).splashify.base_url == expected


@pytest.mark.parametrize("version", ["v25.0", "v1", "v19.10"])
def test_api_versions(version: str) -> None:
    text = f"splashify: {{api_key: k-123456, api_version: {version}}}\n" + TARGET
    assert parse(text).splashify.api_version == version


def test_numbers_may_be_strings_as_variables_give_them() -> None:
    text = (
        "splashify:\n  api_key: k-123456\n  max_retries: ${R}\n  max_concurrency: '2'\n"
        "  requests_per_second: ${RPS}\n  timeout: ${T}\n" + TARGET
    )
    splashify = parse(text, {"R": "0", "RPS": "0.5", "T": "90"}).splashify
    assert (splashify.max_retries, splashify.max_concurrency) == (0, 2)
    assert (splashify.requests_per_second, splashify.timeout) == (0.5, 90.0)


def test_ids_and_phone_numbers_may_be_unquoted_ints() -> None:
    config = parse(
        API_KEY + "targets:\n  - {waba_id: 115344761664057, phone_numbers: [91, '92']}\n"
    )
    assert config.targets == (
        Target(name="115344761664057", waba_id="115344761664057", phone_numbers=("91", "92")),
    )


def test_dimensions_are_stored_in_canonical_label_order() -> None:
    config = parse(MINIMAL + "dimensions: [PHONE, CONVERSATION_TYPE, COUNTRY]\n")
    assert config.dimensions == ("CONVERSATION_TYPE", "COUNTRY", "PHONE")


def test_no_dimensions_means_totals_per_target() -> None:
    assert parse(MINIMAL + "dimensions: []\n").dimensions == ()


def test_filter_values_are_stored_in_canonical_order() -> None:
    config = parse(MINIMAL + "filters:\n  conversation_types: [REGULAR, FREE_ENTRY]\n")
    assert config.filters == Filters(conversation_types=("FREE_ENTRY", "REGULAR"))


def test_delay_may_be_zero() -> None:
    config = parse(MINIMAL + "poll: {delay: 0, lookback: 31m, interval: 11s, stale_after: 12s}\n")
    assert config.poll == PollConfig(interval=11.0, lookback=1860.0, delay=0.0, stale_after=12.0)


def test_lookback_may_be_exactly_interval_plus_delay_plus_a_bucket() -> None:
    assert parse(MINIMAL + "poll: {lookback: 6h, interval: 5h}\n").poll.interval == 18000.0


@pytest.mark.parametrize(
    ("poll", "stale_after"),
    [
        ("{}", 3600.0),
        ("{interval: 30m}", 5400.0),
        ("{interval: 11s}", 3600.0),
        ("{interval: 30m, stale_after: 31m}", 1860.0),
    ],
)
def test_stale_after_defaults_to_three_intervals_and_at_least_an_hour(
    poll: str, stale_after: float
) -> None:
    assert parse(MINIMAL + f"poll: {poll}\n").poll.stale_after == stale_after


def test_lookback_may_be_a_full_year() -> None:
    assert parse(MINIMAL + "poll: {lookback: 365d}\n").poll.lookback == 365 * 86400.0


# --- ${VAR} ----------------------------------------------------------------------------------


def test_variables_expand_in_every_string_value() -> None:
    text = (
        "splashify:\n"
        "  api_key: ${KEY}\n"
        "  base_url: https://${HOST}/prefix/\n"
        "  api_version: ${VERSION}\n"
        "poll: {interval: '${INTERVAL}'}\n"
        "dimensions: ['${DIM}']\n"
        "filters: {conversation_types: ['${TYPE}']}\n"
        "targets:\n"
        "  - {waba_id: '${WABA}', name: '${NAME}-prod', phone_numbers: ['${PHONE}']}\n"
        "web: {listen_address: '${ADDRESS}'}\n"
    )
    environ = {
        "KEY": "k1-secret",
        "HOST": "example.com",
        "VERSION": "v26.0",
        "INTERVAL": "1m",
        "DIM": "COUNTRY",
        "TYPE": "REGULAR",
        "WABA": "42",
        "NAME": "acme",
        "PHONE": "4917",
        "ADDRESS": "127.0.0.1:1234",
    }
    config = parse(text, environ)

    assert config.splashify.api_key == Secret("k1-secret")
    assert config.splashify.base_url == "https://example.com/prefix"
    assert config.splashify.api_version == "v26.0"
    assert config.poll.interval == 60.0
    assert config.dimensions == ("COUNTRY",)
    assert config.filters.conversation_types == ("REGULAR",)
    assert config.targets == (Target(name="acme-prod", waba_id="42", phone_numbers=("4917",)),)
    assert config.web.listen_address == ListenAddress("127.0.0.1", 1234)


def test_expansion_is_single_pass() -> None:
    """A value that itself looks like a reference is taken as it is."""
    config = parse(API_KEY + "targets: [{customer_id: '${A}'}]\n", {"A": "${B}"})
    assert config.targets[0].customer_id == "${B}"


def test_keys_are_not_expanded() -> None:
    assert error_of(MINIMAL + "${X}: 1\n", {"X": "web"}).startswith('unknown key "${X}" (one of')


def test_load_config_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLASHIFY_API_KEY", "from-env")
    config = load_config(write(tmp_path, EXAMPLE))
    assert config.splashify.api_key.reveal() == "from-env"


# --- api_key_file ----------------------------------------------------------------------------


def key_file_config(path: str) -> str:
    return f"splashify:\n  api_key_file: '{path}'\n" + TARGET


def test_api_key_file_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "key").write_text("  sk_file_1 \n", encoding="utf-8")
    config_path = write(tmp_path, key_file_config("secrets/key"))
    monkeypatch.chdir("/")

    assert load_config(config_path, {}).splashify.api_key == Secret("sk_file_1")


def test_api_key_file_absolute_and_from_a_variable(tmp_path: Path) -> None:
    key_path = tmp_path / "key"
    key_path.write_text("sk_file_2\n", encoding="utf-8")
    config = parse(key_file_config("${KEY_FILE}"), {"KEY_FILE": str(key_path)}, Path("/nowhere"))
    assert config.splashify.api_key == Secret("sk_file_2")


def test_api_key_file_without_base_dir_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text("sk_file_3", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert parse(key_file_config("key")).splashify.api_key == Secret("sk_file_3")


@pytest.mark.parametrize("content", [b"", b" \n\t\n"])
def test_an_empty_api_key_file_is_rejected(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "key").write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        parse(key_file_config("key"), base_dir=tmp_path)
    assert str(caught.value) == "splashify.api_key_file: resolves to an empty value"


def test_a_missing_api_key_file_is_named_with_the_os_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(key_file_config("missing"), base_dir=tmp_path)
    assert str(caught.value) == (
        f'splashify.api_key_file: cannot read "{tmp_path / "missing"}": No such file or directory'
    )


def test_an_api_key_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(key_file_config("."), base_dir=tmp_path)
    assert str(caught.value) == f'splashify.api_key_file: cannot read "{tmp_path}": Is a directory'


def test_an_api_key_file_that_is_not_text_is_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"sk_binary_\xff\xfe")
    with pytest.raises(ConfigError) as caught:
        parse(key_file_config("key"), base_dir=tmp_path)
    assert str(caught.value) == f'splashify.api_key_file: "{tmp_path / "key"}" is not UTF-8 text'
    assert caught.value.__suppress_context__


def test_an_api_key_file_with_spaces_inside_is_rejected_unseen(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk_part_one sk_part_two\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        parse(key_file_config("key"), base_dir=tmp_path)
    assert "sk_part" not in str(caught.value)
    assert caught.value.place == "splashify.api_key_file"


# --- one exact message per rule --------------------------------------------------------------

SPLASHIFY_KEYS = (
    "base_url, api_version, api_key, api_key_file, timeout, max_retries, max_concurrency, "
    "requests_per_second"
)
DIMENSION_NAMES = "CONVERSATION_CATEGORY, CONVERSATION_DIRECTION, CONVERSATION_TYPE, COUNTRY, PHONE"


def splashify(extra: str) -> str:
    return f"splashify: {{api_key: k-123456, {extra}}}\n" + TARGET


def targets(*items: str) -> str:
    return API_KEY + "targets:\n" + "".join(f"  - {item}\n" for item in items)


TOP_KEYS = (
    "(one of splashify, poll, dimensions, filters, sources, pricing, messages, targets, web, "
    "shard, limits)"
)

ERRORS = [
    # the shape
    ("", "the config is empty"),
    ("- a\n", "the top level must be a mapping, got a list"),
    ("sk_live_only_a_key\n", "the top level must be a mapping, got a string"),
    (
        MINIMAL + "extra: 1\n",
        "unknown key extra " + TOP_KEYS,
    ),
    (
        MINIMAL + "1: x\n",
        "unknown key 1 " + TOP_KEYS,
    ),
    (
        MINIMAL + '"a.b\\n": x\n',
        'unknown key "a.b\\n" ' + TOP_KEYS,
    ),
    (
        splashify("base_ur: x"),
        f"unknown key splashify.base_ur (one of {SPLASHIFY_KEYS})",
    ),
    (
        MINIMAL + "poll: {intervall: 5m}\n",
        "unknown key poll.intervall (one of interval, lookback, delay, stale_after)",
    ),
    (
        MINIMAL + "filters: {conversation_type: [REGULAR]}\n",
        "unknown key filters.conversation_type (one of "
        "conversation_categories, conversation_types, conversation_directions)",
    ),
    (
        targets("{waba_id: '1'}", "{wabaid: '2'}"),
        "unknown key targets[1].wabaid (one of waba_id, customer_id, name, phone_numbers)",
    ),
    (
        MINIMAL + "web: {listen: ':1'}\n",
        "unknown key web.listen (one of listen_address)",
    ),
    ("splashify: [k]\n" + TARGET, "splashify: expected a mapping, got a list"),
    (MINIMAL + "poll: 5m\n", 'poll: expected a mapping, got "5m"'),
    (MINIMAL + "web: 9477\n", "web: expected a mapping, got 9477"),
    # the API key
    (
        "splashify: {api_key: k-123456, api_key_file: f}\n" + TARGET,
        "splashify: set api_key or api_key_file, not both",
    ),
    (
        "splashify: {timeout: 1s}\n" + TARGET,
        "splashify.api_key: required (or splashify.api_key_file)",
    ),
    (TARGET, "splashify.api_key: required (or splashify.api_key_file)"),
    ("splashify: {api_key: ''}\n" + TARGET, "splashify.api_key: resolves to an empty value"),
    ("splashify: {api_key: ' \t '}\n" + TARGET, "splashify.api_key: resolves to an empty value"),
    (
        "splashify: {api_key: 12345}\n" + TARGET,
        "splashify.api_key: expected a string, got an integer",
    ),
    ("splashify: {api_key: [k]}\n" + TARGET, "splashify.api_key: expected a string, got a list"),
    (
        "splashify: {api_key: 'a b'}\n" + TARGET,
        "splashify.api_key: holds whitespace or characters outside printable ASCII "
        "(value not shown)",
    ),
    (
        "splashify: {api_key: '${SPLASHIFY_API_KEY}'}\n" + TARGET,
        "splashify.api_key: environment variable SPLASHIFY_API_KEY is not set",
    ),
    (
        "splashify: {api_key: '${SPLASHIFY_API_KEY'}\n" + TARGET,
        "splashify.api_key: malformed variable reference; write ${NAME}",
    ),
    (
        "splashify: {api_key: '${1X}'}\n" + TARGET,
        "splashify.api_key: malformed variable reference; write ${NAME}",
    ),
    ("splashify: {api_key_file: ''}\n" + TARGET, "splashify.api_key_file: must not be empty"),
    (
        "splashify: {api_key_file: 5}\n" + TARGET,
        "splashify.api_key_file: expected a string, got 5; quote it",
    ),
    # base_url and api_version
    (splashify("base_url: ftp://h"), "splashify.base_url: must start with http:// or https://"),
    (
        splashify("base_url: api.splashifypro.com"),
        "splashify.base_url: must start with http:// or https://",
    ),
    (splashify("base_url: 'https://'"), "splashify.base_url: has no host"),
    (splashify("base_url: 'https:///path'"), "splashify.base_url: has no host"),
    (
        splashify("base_url: 'https://u:p@h'"),
        "splashify.base_url: must not hold credentials (user:password@)",
    ),
    (
        splashify("base_url: 'https://h/?a=1'"),
        "splashify.base_url: must not have a query or fragment, only a path prefix",
    ),
    (
        splashify("base_url: 'https://h#x'"),
        "splashify.base_url: must not have a query or fragment, only a path prefix",
    ),
    (
        splashify("base_url: 'https://h /x'"),
        "splashify.base_url: must not contain whitespace or control characters",
    ),
    (
        splashify("base_url: 'https://h:99999'"),
        "splashify.base_url: not a URL: Port out of range 0-65535",
    ),
    (splashify("base_url: 'https://[::1'"), "splashify.base_url: not a URL: Invalid IPv6 URL"),
    (splashify("base_url: 8080"), "splashify.base_url: expected a string, got 8080; quote it"),
    (splashify("api_version: '25.0'"), 'splashify.api_version: must look like v25.0, got "25.0"'),
    (
        splashify("api_version: v25.0.1"),
        'splashify.api_version: must look like v25.0, got "v25.0.1"',
    ),
    (splashify("api_version: V25"), 'splashify.api_version: must look like v25.0, got "V25"'),
    (
        splashify("api_version: 25.0"),
        "splashify.api_version: expected a string, got 25.0; quote it",
    ),
    # durations
    (splashify("timeout: 3x"), 'splashify.timeout: not a duration: "3x"'),
    (splashify("timeout: 0"), "splashify.timeout: must be longer than 0s"),
    (splashify("timeout: 0s"), "splashify.timeout: must be longer than 0s"),
    (splashify("timeout: -1"), "splashify.timeout: not a duration: -1"),
    (splashify("timeout: .inf"), "splashify.timeout: not a duration: inf"),
    (splashify("timeout: true"), "splashify.timeout: not a duration: true"),
    (splashify("timeout: [1]"), "splashify.timeout: not a duration: a list"),
    (MINIMAL + "poll: {delay: 3x}\n", 'poll.delay: not a duration: "3x"'),
    (MINIMAL + "poll: {delay: -1s}\n", 'poll.delay: not a duration: "-1s"'),
    (MINIMAL + "poll: {lookback: 1w}\n", 'poll.lookback: not a duration: "1w"'),
    (
        MINIMAL + "poll: {interval: 0.5}\n",
        "poll.interval: must be at least 1s",
    ),
    (
        MINIMAL + "poll: {interval: 0}\n",
        "poll.interval: must be at least 1s",
    ),
    (
        MINIMAL + "poll: {interval: 1h, stale_after: 1h}\n",
        "poll.stale_after: must be longer than poll.interval (3600s), "
        "or data would be dropped between two good polls",
    ),
    (
        MINIMAL + "poll: {interval: 10s}\nsplashify: {api_key: k-123456, timeout: 11s}\n",
        "splashify.timeout: must not be longer than poll.interval (10s), "
        "or one request could outlast a whole poll cycle",
    ),
    (
        MINIMAL + "poll: {stale_after: 1x}\n",
        'poll.stale_after: not a duration: "1x"',
    ),
    (
        MINIMAL + "poll: {lookback: 366d}\n",
        "poll.lookback: must be at most 365d, the history the upstream keeps",
    ),
    (
        MINIMAL + "poll: {lookback: 1h}\n",
        "poll.lookback: must be at least poll.interval + poll.delay + 30m (3900s), "
        "or a bucket can complete and leave the window between two polls",
    ),
    (
        MINIMAL + "poll: {lookback: 2h, delay: 2h}\n",
        "poll.lookback: must be at least poll.interval + poll.delay + 30m (9300s), "
        "or a bucket can complete and leave the window between two polls",
    ),
    (
        MINIMAL + "poll: {lookback: 6h, interval: 6h}\n",
        "poll.lookback: must be at least poll.interval + poll.delay + 30m (25200s), "
        "or a bucket can complete and leave the window between two polls",
    ),
    (
        MINIMAL + "poll: {lookback: 30m, delay: 0}\n",
        "poll.lookback: must be at least poll.interval + poll.delay + 30m (2100s), "
        "or a bucket can complete and leave the window between two polls",
    ),
    # integers and rates
    (splashify("max_retries: -1"), "splashify.max_retries: must be at least 0, got -1"),
    (splashify("max_retries: '-1'"), "splashify.max_retries: must be at least 0, got -1"),
    (splashify("max_retries: true"), "splashify.max_retries: expected an integer, got true"),
    (splashify("max_retries: 1.5"), "splashify.max_retries: expected an integer, got 1.5"),
    (splashify("max_retries: many"), 'splashify.max_retries: expected an integer, got "many"'),
    (splashify("max_concurrency: 0"), "splashify.max_concurrency: must be at least 1, got 0"),
    (splashify("max_concurrency: yes"), "splashify.max_concurrency: expected an integer, got true"),
    (
        splashify("requests_per_second: 0"),
        "splashify.requests_per_second: must be a number greater than 0, got 0",
    ),
    (
        splashify("requests_per_second: -2.5"),
        "splashify.requests_per_second: must be a number greater than 0, got -2.5",
    ),
    (
        splashify("requests_per_second: .nan"),
        "splashify.requests_per_second: must be a number greater than 0, got nan",
    ),
    (
        splashify("requests_per_second: .inf"),
        "splashify.requests_per_second: must be a number greater than 0, got inf",
    ),
    (
        splashify("requests_per_second: true"),
        "splashify.requests_per_second: expected a number, got true",
    ),
    (
        splashify("requests_per_second: fast"),
        'splashify.requests_per_second: expected a number, got "fast"',
    ),
    # dimensions
    (
        MINIMAL + "dimensions: [CONVERSATION_CATEGORY, COUNTRY, CUNTRY]\n",
        f'dimensions[2]: unknown dimension "CUNTRY" (one of {DIMENSION_NAMES})',
    ),
    (
        MINIMAL + "dimensions: [country]\n",
        f'dimensions[0]: unknown dimension "country" (one of {DIMENSION_NAMES})',
    ),
    (
        MINIMAL + "dimensions: [COUNTRY, PHONE, COUNTRY]\n",
        'dimensions[2]: duplicate "COUNTRY" (also dimensions[0])',
    ),
    (MINIMAL + "dimensions: COUNTRY\n", 'dimensions: expected a list, got "COUNTRY"'),
    (MINIMAL + "dimensions: [[COUNTRY]]\n", "dimensions[0]: expected a string, got a list"),
    (MINIMAL + "dimensions: ['${D}']\n", "dimensions[0]: environment variable D is not set"),
    # filters
    (
        MINIMAL + "filters: {conversation_types: [FREE_ENTRY_POINT]}\n",
        'filters.conversation_types[0]: unknown value "FREE_ENTRY_POINT" '
        "(one of FREE_ENTRY, FREE_TIER, REGULAR)",
    ),
    (
        MINIMAL + "filters: {conversation_categories: [MARKETING, MARKETING_LITE]}\n",
        'filters.conversation_categories[1]: unknown value "MARKETING_LITE" '
        "(one of AUTHENTICATION, MARKETING, SERVICE, UTILITY)",
    ),
    (
        MINIMAL + "filters: {conversation_directions: [USER_INITIATED, USER_INITIATED]}\n",
        'filters.conversation_directions[1]: duplicate "USER_INITIATED" '
        "(also filters.conversation_directions[0])",
    ),
    (
        MINIMAL + "filters: {conversation_types: REGULAR}\n",
        'filters.conversation_types: expected a list, got "REGULAR"',
    ),
    (MINIMAL + "filters: [REGULAR]\n", "filters: expected a mapping, got a list"),
    # targets
    (API_KEY, "targets: required (at least one target)"),
    (API_KEY + "targets: []\n", "targets: must list at least one target"),
    (API_KEY + "targets: {waba_id: '1'}\n", "targets: expected a list, got a mapping"),
    (targets("5"), "targets[0]: expected a mapping, got 5"),
    (targets("{waba_id: '1'}", "{name: x}"), "targets[1].waba_id: required (or customer_id)"),
    (targets("{waba_id: '1'}", "null"), "targets[1].waba_id: required (or customer_id)"),
    (
        targets("{waba_id: '1'}", "{waba_id: '2', customer_id: c}"),
        "targets[1]: set waba_id or customer_id, not both",
    ),
    (targets("{waba_id: '12a'}"), 'targets[0].waba_id: must be digits only, got "12a"'),
    (targets("{waba_id: ''}"), 'targets[0].waba_id: must be digits only, got ""'),
    (targets("{waba_id: ' 1'}"), 'targets[0].waba_id: must be digits only, got " 1"'),
    (
        targets("{waba_id: 1.5e+14}"),
        "targets[0].waba_id: must be digits only, got 150000000000000.0",
    ),
    (targets("{waba_id: true}"), "targets[0].waba_id: must be digits only, got true"),
    (targets("{waba_id: -5}"), "targets[0].waba_id: must be digits only, got -5"),
    (
        targets("{waba_id: '\u0661\u0662'}"),
        'targets[0].waba_id: must be digits only, got "\u0661\u0662"',
    ),
    (
        targets("{customer_id: a/b}"),
        'targets[0].customer_id: must not hold "/", whitespace or control characters, got "a/b"',
    ),
    (
        targets("{customer_id: 'a b'}"),
        'targets[0].customer_id: must not hold "/", whitespace or control characters, got "a b"',
    ),
    (
        targets('{customer_id: "a\\tb"}'),
        'targets[0].customer_id: must not hold "/", whitespace or control characters, got "a\\tb"',
    ),
    (
        targets("{customer_id: '..'}"),
        'targets[0].customer_id: must not hold "/", whitespace or control characters, got ".."',
    ),
    (targets("{customer_id: ''}"), "targets[0].customer_id: must not be empty"),
    (targets("{customer_id: 123}"), "targets[0].customer_id: expected a string, got 123; quote it"),
    (
        targets("{customer_id: no}"),
        "targets[0].customer_id: expected a string, got false; quote it",
    ),
    (targets("{waba_id: '1', name: ''}"), "targets[0].name: must not be empty"),
    (targets("{waba_id: '1', name: [a]}"), "targets[0].name: expected a string, got a list"),
    (targets("{waba_id: '1', name: '${N}'}"), "targets[0].name: environment variable N is not set"),
    (
        targets("{waba_id: '1', phone_numbers: '912'}"),
        'targets[0].phone_numbers: expected a list, got "912"',
    ),
    (
        targets("{waba_id: '1', phone_numbers: ['1', '+91 22']}"),
        'targets[0].phone_numbers[1]: must be digits only, got "+91 22"',
    ),
    (
        targets("{waba_id: '1', phone_numbers: ['91', 91]}"),
        'targets[0].phone_numbers[1]: duplicate "91" (also targets[0].phone_numbers[0])',
    ),
    (
        targets("{waba_id: '1'}", "{waba_id: 2}", "{waba_id: 1, name: other}"),
        'targets[2]: duplicate waba_id "1" (also targets[0])',
    ),
    (
        targets("{customer_id: c}", "{customer_id: c, name: other}"),
        'targets[1]: duplicate customer_id "c" (also targets[0])',
    ),
    (
        targets("{waba_id: '1', name: acme}", "{waba_id: '2'}", "{customer_id: c, name: acme}"),
        'targets[2]: duplicate name "acme" (also targets[0])',
    ),
    (
        targets("{waba_id: '1'}", "{customer_id: c, name: '1'}"),
        'targets[1]: duplicate name "1" (also targets[0])',
    ),
    (
        targets("{waba_id: '7'}", "{customer_id: '7'}"),
        'targets[1]: duplicate name "7" (also targets[0])',
    ),
    # shard
    (
        MINIMAL + "shard: {index: 2, total: 2}\n",
        "shard.index: must be less than shard.total (2), got 2; shards count from 0",
    ),
    (
        MINIMAL + "shard: {index: 0, total: 0}\n",
        "shard.total: must be at least 1, got 0",
    ),
    (
        MINIMAL + "shard: {index: -1, total: 2}\n",
        "shard.index: must be at least 0, got -1",
    ),
    (
        MINIMAL + "shard: {index: true, total: 2}\n",
        "shard.index: expected an integer, got true",
    ),
    (
        MINIMAL + "shard: {index: 0, total: 1.5}\n",
        "shard.total: expected an integer, got 1.5",
    ),
    (
        MINIMAL + "shard: {index: 0, total: '1/2'}\n",
        'shard.total: expected an integer, got "1/2"',
    ),
    (MINIMAL + "shard: {total: 2}\n", "shard.index: required when shard.total is set"),
    (MINIMAL + "shard: {index: 1}\n", "shard.total: required when shard.index is set"),
    (
        MINIMAL + "shard: {index: 0, total: 2, replicas: 2}\n",
        "unknown key shard.replicas (one of index, total)",
    ),
    (MINIMAL + "shard: 1/2\n", 'shard: expected a mapping, got "1/2"'),
    # web
    (
        MINIMAL + "web: {listen_address: '9477'}\n",
        'web.listen_address: no port in "9477"; expected HOST:PORT, [IPv6]:PORT or :PORT',
    ),
    (
        MINIMAL + "web: {listen_address: 9477}\n",
        "web.listen_address: expected a string, got 9477; quote it",
    ),
    (
        MINIMAL + "web: {listen_address: ':65536'}\n",
        'web.listen_address: not a port (0-65535): "65536"',
    ),
    (
        MINIMAL + "web: {listen_address: '::1:80'}\n",
        'web.listen_address: an IPv6 address goes in brackets ([::1]:9477): "::1:80"',
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_each_rule_has_one_exact_line(text: str, message: str) -> None:
    assert error_of(text) == message
    assert "\n" not in message


def test_error_has_place_and_message_apart() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL + "poll: {delay: 3x}\n")
    assert (caught.value.place, caught.value.message) == ("poll.delay", 'not a duration: "3x"')


def test_an_unknown_key_error_carries_its_place() -> None:
    with pytest.raises(ConfigError) as caught:
        parse(MINIMAL + "poll: {intervall: 5m}\n")
    assert caught.value.place == "poll.intervall"


# --- the API key stays secret ----------------------------------------------------------------

SECRET_PART = "sk_SECRET_4242"


@pytest.mark.parametrize(
    "line",
    [
        f"api_key: '{SECRET_PART} {SECRET_PART}'",
        f'api_key: "{SECRET_PART}\\n{SECRET_PART}"',
        f'api_key: "{SECRET_PART}\\u00e9"',
        f'api_key: "{SECRET_PART}\\x00"',
        f"api_key: {{nested: {SECRET_PART}}}",
        f"api_key: [{SECRET_PART}]",
        f"api_key: '{SECRET_PART}', api_key_file: '{SECRET_PART}'",
    ],
)
def test_the_key_is_never_in_an_error_message(line: str) -> None:
    message = error_of(f"splashify: {{{line}}}\n" + TARGET)
    assert SECRET_PART not in message
    assert "4242" not in message


def test_a_numeric_key_is_not_echoed() -> None:
    assert "98765" not in error_of("splashify: {api_key: 98765}\n" + TARGET)


@pytest.mark.parametrize(
    "line",
    [
        f'  api_key: "{SECRET_PART}\\q"',  # a bad escape is a syntax error on the key's line
        f"  api_key: !!int {SECRET_PART}",  # a tag that cannot build the value
        f"  api_key: !!float {SECRET_PART}",
        f"  api_key: {SECRET_PART}: x",
        f"  api_key: '{SECRET_PART}",
    ],
)
def test_the_key_is_never_in_a_yaml_error(tmp_path: Path, line: str) -> None:
    path = write(tmp_path, "splashify:\n" + line + "\n" + TARGET)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert SECRET_PART not in str(caught.value)
    assert "4242" not in str(caught.value)


def test_a_file_holding_only_the_key_is_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, SECRET_PART + "\n"), {})
    assert SECRET_PART not in str(caught.value)


def test_the_key_is_not_in_the_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, EXAMPLE), ENV)
    for text in (repr(config), str(config), repr(config.splashify), f"{config.splashify.api_key}"):
        assert KEY not in text
    assert "api_key" not in repr(config.splashify)


# --- load_config and the file ----------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: cannot read: No such file or directory"
    assert caught.value.place == str(path)


def test_a_folder_instead_of_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path), {})
    assert str(caught.value) == f"{tmp_path}: cannot read: Is a directory"


def test_a_path_with_a_nul_byte(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(f"{tmp_path}/a\0b", {})
    assert caught.value.message == "cannot read: embedded null byte"


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"splashify:\n  api_key: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: cannot read: not UTF-8 text"


@pytest.mark.parametrize(
    ("text", "place", "message"),
    [
        (
            "splashify:\n  api_key: k-123456\n  timeout: 10s: 5\n",
            "3:15",
            "invalid YAML: mapping values are not allowed here",
        ),
        (
            "a: [1, 2\n",
            "2:1",
            "invalid YAML: while parsing a flow sequence, expected ',' or ']', "
            "but got '<stream end>'",
        ),
        (
            "a:\n\t- b\n",
            "2:1",
            "invalid YAML: while scanning for the next token, found character '\\t' that cannot "
            "start any token",
        ),
        ("a: 1\nb: x\x07y\n", "2:5", "invalid YAML: character U+0007 is not allowed"),
        (
            "a: 1\n---\nb: 2\n",
            "2:1",
            "invalid YAML: expected a single document in the stream, but found another document",
        ),
    ],
)
def test_yaml_syntax_errors_name_file_line_and_column(
    tmp_path: Path, text: str, place: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}:{place}: {message}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: 2023-02-30\n",
            "invalid YAML: a value does not fit its type (e.g. a date like 2023-02-30)",
        ),
        ("[" * 5000, "invalid YAML: nested too deeply"),
    ],
)
def test_yaml_values_that_cannot_be_built(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: {message}"


def test_load_config_passes_on_validation_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, EXAMPLE), {})
    assert str(caught.value) == (
        "splashify.api_key: environment variable SPLASHIFY_API_KEY is not set"
    )


# --- parse_duration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("30m", 1800.0),
        ("6h", 21600.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("0.5s", 0.5),
        ("300", 300.0),
        ("2.5", 2.5),
        (" 5m ", 300.0),
        ("0", 0.0),
        (45, 45.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3x", 'not a duration: "3x"'),
        ("", 'not a duration: ""'),
        ("5 m", 'not a duration: "5 m"'),
        ("5M", 'not a duration: "5M"'),
        ("m", 'not a duration: "m"'),
        ("-5s", 'not a duration: "-5s"'),
        ("1e3", 'not a duration: "1e3"'),
        ("inf", 'not a duration: "inf"'),
        ("nan", 'not a duration: "nan"'),
        ("1w", 'not a duration: "1w"'),
        ("5m\n1s", 'not a duration: "5m\\n1s"'),
        (-1, "not a duration: -1"),
        (float("inf"), "not a duration: inf"),
        (float("nan"), "not a duration: nan"),
        (10**400, "not a duration: " + str(10**400)),
        (True, "not a duration: true"),
    ],
)
def test_parse_duration_rejects(value: str | float, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


# --- parse_listen_address --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("0.0.0.0:9477", "0.0.0.0", 9477, "0.0.0.0:9477"),
        ("localhost:80", "localhost", 80, "localhost:80"),
        ("my-host.example:0", "my-host.example", 0, "my-host.example:0"),
        (":9477", "", 9477, ":9477"),
        ("[::1]:9477", "::1", 9477, "[::1]:9477"),
        ("[::]:65535", "::", 65535, "[::]:65535"),
        ("[fe80::1%eth0]:1", "fe80::1%eth0", 1, "[fe80::1%eth0]:1"),
    ],
)
def test_parse_listen_address(text: str, host: str, port: int, shown: str) -> None:
    address = parse_listen_address(text)
    assert address == ListenAddress(host, port)
    assert str(address) == shown


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9477", 'no port in "9477"; expected HOST:PORT, [IPv6]:PORT or :PORT'),
        ("", 'no port in ""; expected HOST:PORT, [IPv6]:PORT or :PORT'),
        ("host:", 'not a port (0-65535): ""'),
        ("host:65536", 'not a port (0-65535): "65536"'),
        ("host:-1", 'not a port (0-65535): "-1"'),
        ("host:http", 'not a port (0-65535): "http"'),
        ("host: 80", 'not a port (0-65535): " 80"'),
        ("host:" + "9" * 5000, 'not a port (0-65535): "' + "9" * 5000 + '"'),
        ("::1:9477", 'an IPv6 address goes in brackets ([::1]:9477): "::1:9477"'),
        ("[::1:9477", 'an IPv6 address goes in brackets ([::1]:9477): "[::1:9477"'),
        ("[1.2.3.4]:80", 'not an IPv6 address in brackets: "[1.2.3.4]:80"'),
        ("[]:80", 'not an IPv6 address in brackets: "[]:80"'),
        ("a b:80", 'not a host name or address: "a b"; expected HOST:PORT, [IPv6]:PORT or :PORT'),
        ("a/b:80", 'not a host name or address: "a/b"; expected HOST:PORT, [IPv6]:PORT or :PORT'),
    ],
)
def test_parse_listen_address_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_listen_address(text)
    assert str(caught.value) == message


# --- properties: nothing but Config or ConfigError, always one line --------------------------

KNOWN_KEYS = [
    "splashify",
    "poll",
    "dimensions",
    "filters",
    "targets",
    "web",
    "base_url",
    "api_version",
    "api_key",
    "api_key_file",
    "timeout",
    "max_retries",
    "max_concurrency",
    "requests_per_second",
    "interval",
    "lookback",
    "delay",
    "conversation_categories",
    "conversation_types",
    "conversation_directions",
    "waba_id",
    "customer_id",
    "name",
    "phone_numbers",
    "listen_address",
    "shard",
    "index",
    "total",
]
LIKELY_STRINGS = [
    "",
    " ",
    "k",
    "5m",
    "10s",
    "1d",
    "3x",
    "v25.0",
    "https://h",
    "http://[::1",
    "0.0.0.0:9477",
    ":1",
    "[::1]:80",
    "${K}",
    "${MISSING}",
    "${",
    "COUNTRY",
    "PHONE",
    "MARKETING",
    "REGULAR",
    "USER_INITIATED",
    "123",
    "-1",
    "acme",
    ".",
    "a/b",
    "\n",
    "\x00",
]
ENVIRON = {"K": "sk_test_key"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(LIKELY_STRINGS)
    | st.dates()
    | st.datetimes()
    | st.binary(max_size=4)
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=6) | st.integers() | st.none()
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(keys, children, max_size=5)
        | st.sets(st.integers(), max_size=3)
    ),
    max_leaves=25,
)

VALID = {
    "splashify": {
        "api_key": "${K}",
        "base_url": "https://h",
        "api_version": "v25.0",
        "timeout": "10s",
        "max_retries": 4,
        "max_concurrency": 8,
        "requests_per_second": 10,
    },
    "poll": {"interval": "5m", "lookback": "6h", "delay": "30m"},
    "dimensions": ["COUNTRY", "PHONE"],
    "filters": {
        "conversation_categories": ["MARKETING"],
        "conversation_types": ["REGULAR"],
        "conversation_directions": ["USER_INITIATED"],
    },
    "targets": [
        {"waba_id": "1", "name": "a", "phone_numbers": ["91"]},
        {"customer_id": "c", "name": "b"},
    ],
    "web": {"listen_address": ":9477"},
    "shard": {"index": 1, "total": 2},
}


def paths(tree: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Every place in `tree` a value could be swapped in at, itself included."""
    found = [prefix]
    if isinstance(tree, dict):
        for key, child in tree.items():
            found += paths(child, (*prefix, key))
    elif isinstance(tree, list):
        for index, child in enumerate(tree):
            found += paths(child, (*prefix, index))
    return found


VALID_PATHS = paths(VALID)


def assert_config_or_one_line_error(run: object) -> None:
    try:
        assert isinstance(run(), Config)  # type: ignore[operator]
    except ConfigError as exc:
        assert len(str(exc).splitlines()) == 1, str(exc)
        assert str(exc).isprintable(), str(exc)


def test_the_valid_tree_is_valid() -> None:
    assert isinstance(parse_config(VALID, ENVIRON), Config)


@settings(max_examples=400, deadline=None)
@given(values)
def test_any_value_gives_config_or_config_error(raw: object) -> None:
    assert_config_or_one_line_error(lambda: parse_config(raw, ENVIRON))


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(VALID_PATHS), values)
def test_any_value_anywhere_in_a_valid_config(path: tuple[object, ...], value: object) -> None:
    tree = copy.deepcopy(VALID)
    if path:
        parent: object = tree
        for step in path[:-1]:
            parent = parent[step]  # type: ignore[index]
        parent[path[-1]] = value  # type: ignore[index]
    else:
        tree = value  # type: ignore[assignment]
    assert_config_or_one_line_error(lambda: parse_config(tree, ENVIRON))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(VALID_PATHS[1:]), st.sampled_from(KNOWN_KEYS) | st.text(max_size=6))
def test_any_extra_key_anywhere(path: tuple[object, ...], key: str) -> None:
    tree = copy.deepcopy(VALID)
    node: object = tree
    for step in path:
        node = node[step]  # type: ignore[index]
    if isinstance(node, dict):
        node[key] = "x"
    assert_config_or_one_line_error(lambda: parse_config(tree, ENVIRON))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text())
def test_any_text_gives_config_or_config_error(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert_config_or_one_line_error(lambda: load_config(path, ENVIRON))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_any_edit_of_the_example_gives_config_or_config_error(
    tmp_path: Path, data: st.DataObject
) -> None:
    start = data.draw(st.integers(0, len(EXAMPLE)))
    end = data.draw(st.integers(start, min(len(EXAMPLE), start + 20)))
    insert = data.draw(st.text(max_size=10) | st.sampled_from([*LIKELY_STRINGS, ":", "-", "["]))
    path = write(tmp_path, EXAMPLE[:start] + insert + EXAMPLE[end:])
    assert_config_or_one_line_error(lambda: load_config(path, ENV))


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"[0-9]{6,12}", fullmatch=True),
    st.sampled_from([" ", "\n", "\t", "\x00", "\u00e9", "\u2028", "\x7f"]),
    st.from_regex(r"[0-9]{6,12}", fullmatch=True),
)
def test_a_bad_key_is_never_echoed(head: str, separator: str, tail: str) -> None:
    raw = {"splashify": {"api_key": head + separator + tail}, "targets": [{"waba_id": "1"}]}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    assert head not in str(caught.value)
    assert tail not in str(caught.value)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[!-~]{8,40}", fullmatch=True))
def test_a_printable_key_is_taken_as_it_is(key: str) -> None:
    raw = {"splashify": {"api_key": "${K}"}, "targets": [{"waba_id": "1"}]}
    config = parse_config(raw, {"K": f" {key}\n"})
    assert config.splashify.api_key.reveal() == key


def test_date_and_binary_values_are_rejected_by_kind() -> None:
    raw = {
        "splashify": {"api_key": "k-123456"},
        "targets": [{"customer_id": datetime.date(2024, 1, 1)}],
    }
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, {})
    assert str(caught.value) == "targets[0].customer_id: expected a string, got a date"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "splashify: {api_key: k-123456}\ntargets: [{waba_id: '1'}]\n"
            "targets: [{waba_id: '2'}]\n",
            'c.yaml:3:1: invalid YAML: while constructing a mapping, duplicate key "targets"',
        ),
        (
            "splashify:\n  api_key: k-123456\n  api_key: j\ntargets: [{waba_id: '1'}]\n",
            'c.yaml:3:3: invalid YAML: while constructing a mapping, duplicate key "api_key"',
        ),
    ],
)
def test_a_key_given_twice_is_rejected(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{tmp_path}/{expected}"


def test_yaml_merge_keys_may_repeat_a_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "splashify: {api_key: k-123456}\n"
        "targets:\n"
        "  - &first {waba_id: '1', phone_numbers: ['9']}\n"
        "  - {<<: *first, waba_id: '2', name: second}\n"
    )
    second = load_config(path, {}).targets[1]
    assert (second.waba_id, second.name, second.phone_numbers) == ("2", "second", ("9",))


def test_a_secret_put_in_the_wrong_field_is_not_echoed() -> None:
    secret = "pk_live_9f8e7d6c5b4a"
    text = "splashify: {api_key: '${KEY}', timeout: '${KEY}'}\ntargets: [{waba_id: '1'}]\n"
    with pytest.raises(ConfigError) as caught:
        parse(text, {"KEY": secret})
    assert str(caught.value) == 'splashify.timeout: not a duration: "${KEY}"'
    assert secret not in caught.value.message
