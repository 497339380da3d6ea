"""`gateway.store` in the node file: etcd's settings are checked like the rest of the file."""
from __future__ import annotations

import pytest

from gateway.config import ConfigError, EtcdStore, parse_config_text


def issues(store: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config_text(f"gateway:\n  store: {store}\n", "node.yaml")
    return [f"{i.path}: {i.message}" for i in caught.value.issues]


def test_the_etcd_settings_and_their_defaults() -> None:
    config = parse_config_text("gateway:\n  store: {type: etcd, endpoints: ['https://10.0.0.5:2379'],"
                               " prefix: /gw, user: gw, password: pw}\n")
    assert config.gateway.etcd == EtcdStore(type="etcd", endpoints=["https://10.0.0.5:2379"],
                                            prefix="/gw", user="gw", password="pw")
    assert parse_config_text("gateway:\n  store: etcd\n").gateway.etcd == EtcdStore(type="etcd")
    assert parse_config_text("gateway:\n  store: file\n").gateway.etcd is None


def test_bad_etcd_settings_name_their_path() -> None:
    found = issues("{type: etcd, endpoints: ['127.0.0.1:2379', 'http://h:1/x'], prefix: gw/, user: u}")
    assert found == [
        "gateway.store.endpoints[0]: expected http://host:port or https://host:port, got '127.0.0.1:2379'",
        "gateway.store.endpoints[1]: expected http://host:port or https://host:port, got 'http://h:1/x'",
        "gateway.store.prefix: expected a key prefix like /gateway (starts with /, no trailing /), got 'gw/'",
        "gateway.store.password: user and password go together",
    ]
    assert issues("{type: etcd, timeout: 0}")[0].startswith("gateway.store.timeout:")
    assert issues("{type: consul}")[0].startswith("gateway.store.type:")


def test_an_endpoint_urlsplit_refuses_is_an_issue_at_its_path() -> None:
    # Found by fuzz/config_fuzz.py in CI: urlsplit raises ValueError ("Invalid IPv6 URL") for a
    # stray "]", which escaped the check as an exception instead of a config issue.
    assert issues("{type: etcd, endpoints: ['http://10.0.0.5:2379', 'http://10.]0.0.6:2379']}") == [
        "gateway.store.endpoints[1]: expected http://host:port or https://host:port, "
        "got 'http://10.]0.0.6:2379'"]
