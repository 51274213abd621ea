"""``--metrics ADDRESS:PORT`` / ``metrics_address``: where ``syncd run`` serves /metrics.

Kept apart from ``syncd.daemon.metrics`` so that checking a config never imports
``prometheus_client``. A bare port binds loopback (127.0.0.1); any address is taken as
given (``0.0.0.0:9464`` exposes the counts and folder names to the network: the
README says so).
"""

from __future__ import annotations

import ipaddress

from syncd.errors import ConfigError

DEFAULT_METRICS_HOST = "127.0.0.1"


def parse_metrics_address(text: str, where: str = "--metrics") -> tuple[str, int]:
    """(host, port) for ``ADDRESS:PORT``, ``[IPv6]:PORT``, ``HOSTNAME:PORT`` or ``PORT``."""
    raw = text.strip()
    host, port_text = DEFAULT_METRICS_HOST, raw
    if raw.startswith("["):
        inside, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ConfigError(f"{where}: {text!r} is not ADDRESS:PORT (e.g. [::1]:9464)")
        host, port_text = inside, rest[1:]
    elif ":" in raw:
        host, _, port_text = raw.rpartition(":")
        if ":" in host:
            raise ConfigError(f"{where}: {text!r}: write an IPv6 address as [::1]:9464")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"{where}: {text!r}: the port must be a number from 1 to 65535")
    if not host:
        raise ConfigError(f"{where}: {text!r}: the address is empty (e.g. 127.0.0.1:9464)")
    if raw.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"{where}: {text!r}: {host!r} is not an IPv6 address") from None
    return host, int(port_text)
