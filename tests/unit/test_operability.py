"""Pure parts of issue 17: the status line's delayed deletes, the heartbeat of several
mirror threads, route names for metrics, and the new config keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import parse_config
from syncd.daemon.keepalive import Heartbeat, HeartbeatGroup
from syncd.daemon.metrics_address import parse_metrics_address
from syncd.daemon.status import MirrorStatus, status_line
from syncd.errors import ConfigError
from syncd.remote.observer import endpoint_name
from syncd.testing import FakeClock


def test_status_line_counts_delayed_deletes() -> None:
    """Delayed deletes are summed over mirrors, with the soonest due time."""
    line = status_line(
        [
            MirrorStatus("/a", 3, 0, 0, delayed=2, next_delete_in=530),
            MirrorStatus("/b", 1, 0, 0, delayed=1, next_delete_in=61),
        ]
    )
    assert line == (
        "mirrored 4 files in 2 folders, 0 pending, 0 failed, 3 deletes delayed (next in 1 min 1 s)"
    )


def test_heartbeat_group_needs_every_member_healthy() -> None:
    """One mirror thread stuck mid-pass makes the daemon unhealthy; idle ones do not."""
    clock = FakeClock()
    main, quick, stuck = Heartbeat(clock), Heartbeat(clock), Heartbeat(clock)
    group = HeartbeatGroup()
    for member in (main, quick, stuck):
        group.add(member)
    main.set_idle(True)
    quick.set_idle(True)
    clock.now += 50
    assert not group.healthy(stall_limit=30)
    stuck.beat()
    assert group.healthy(stall_limit=30)
    clock.now += 50
    group.discard(stuck)
    assert group.healthy(stall_limit=30)


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/v1/files", "create"),
        ("GET", "/v1/files", "list"),
        ("GET", "/v1/files/file-abc", "retrieve"),
        ("GET", "/v1/files/file-abc/content", "content"),
        ("DELETE", "/v1/files/file-abc", "delete"),
        ("POST", "/openai/v1/uploads", "upload_create"),
        ("POST", "/v1/uploads/upload_1/parts", "upload_part"),
        ("POST", "/v1/uploads/upload_1/complete", "upload_complete"),
        ("POST", "/v1/uploads/upload_1/cancel", "upload_cancel"),
        ("GET", "/v1/vector_stores", "other"),
    ],
)
def test_endpoint_names_are_routes_not_paths(method: str, path: str, name: str) -> None:
    """Requests are labelled by route, so file ids never become label values."""
    assert endpoint_name(method, path) == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9464", ("127.0.0.1", 9464)),
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9464", ("::1", 9464)),
        ("metrics.local:9464", ("metrics.local", 9464)),
    ],
)
def test_metrics_addresses(text: str, expected: tuple[str, int]) -> None:
    """A bare port is loopback; an address is taken as given; IPv6 in brackets."""
    assert parse_metrics_address(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "the port must be a number"),
        (":9464", "the address is empty"),
        ("host:0", "from 1 to 65535"),
        ("::1:9464", "write an IPv6 address as [::1]:9464"),
        ("[::1]9464", "is not ADDRESS:PORT"),
        ("[nope]:9464", "is not an IPv6 address"),
    ],
)
def test_bad_metrics_addresses(text: str, says: str) -> None:
    """Each bad address is one line naming it and the reason."""
    with pytest.raises(ConfigError, match=r"^--metrics: ") as caught:
        parse_metrics_address(text)
    assert says in str(caught.value)


def test_config_keys_of_issue_17() -> None:
    """delete_delay parses durations per mirror; metrics_address is a top-level key."""
    data = {
        "metrics_address": "9464",
        "mirror": [{"folder": "/a", "delete_delay": "2h"}, {"folder": "/b"}],
    }
    config = parse_config(data, Path("/etc/syncd/s.toml"), {})
    assert config.metrics_address == "9464"
    assert [m.delete_delay for m in config.mirrors] == [7200.0, 0.0]
    with pytest.raises(ConfigError, match=r"#1: delete_delay: .* not '-5m'"):
        parse_config({"mirror": [{"folder": "/a", "delete_delay": "-5m"}]}, Path("s.toml"), {})
