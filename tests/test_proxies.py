"""The client's address behind reverse proxies: ``X-Forwarded-For`` is read only on
connections from an address of ``TRUSTED_PROXIES`` (none by default), from the right.
Through a real nginx: tests/test_nginx.py."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory

from realtime import checks, conf
from realtime.proxies import forwarded_client
from realtime.transports.http import client_address


def test_by_default_the_header_is_never_read():
    assert forwarded_client("127.0.0.1", "203.0.113.9") is None
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert client_address(request) == "10.0.0.1"


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),
        # the client made up the left part; the proxy appended the address it came from
        ("127.0.0.1", "203.0.113.9, 198.51.100.7", "198.51.100.7"),
        # two trusted proxies in a row (a load balancer in 10/8, then nginx)
        ("127.0.0.1", "203.0.113.9, 198.51.100.7, 10.1.2.3", "198.51.100.7"),
        ("::1", "2001:db8::5", "2001:db8::5"),
        # a connection from elsewhere: whatever it claims is ignored
        ("198.51.100.7", "203.0.113.9", None),
        ("127.0.0.1", None, None),
        # a value that is no address ends the walk at the last trusted proxy
        ("127.0.0.1", "203.0.113.9, unknown, 10.1.2.3", "10.1.2.3"),
        # only trusted proxies: the leftmost of them
        ("127.0.0.1", "10.0.0.2, 10.1.2.3", "10.0.0.2"),
    ],
)
def test_the_rightmost_address_that_is_no_trusted_proxy_is_the_clients(
    realtime_settings, peer, header, client
):
    realtime_settings(TRUSTED_PROXIES=["127.0.0.1", "::1", "10.0.0.0/8"])
    assert forwarded_client(peer, header) == client


def test_http_callers_get_the_forwarded_address_from_a_trusted_proxy(realtime_settings):
    realtime_settings(TRUSTED_PROXIES=["127.0.0.1"])
    request = RequestFactory().get(
        "/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9, 198.51.100.7"
    )
    assert client_address(request) == "198.51.100.7"


def test_an_entry_that_is_no_address_or_network_is_refused(realtime_settings):
    realtime_settings(TRUSTED_PROXIES=["10.0.0.0/8", "nginx.internal"])
    with pytest.raises(ImproperlyConfigured, match="is not an IP address or network"):
        conf.get_config()
    [error] = checks.check_settings()
    assert (error.id, error.msg) == (
        "realtime.E002",
        "REALTIME['TRUSTED_PROXIES']: 'nginx.internal' is not an IP address or network.",
    )
