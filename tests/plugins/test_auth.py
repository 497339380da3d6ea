"""key-auth, basic-auth, jwt-auth and consumer-restriction through real requests: the gateway
runs as a master with two worker processes in front of a real upstream that echoes what reached
it, so every assertion about what the upstream saw is about bytes that really crossed the proxy.
"""
from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from gateway.plugins import Plugin, PluginConfig
from gateway.server.master import load_and_check
from tests.support.config_check import config_issues, write_plugin_config
from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

HERE = "tests.plugins.test_auth:"
ALICE_SECRET = "alice-hs256-secret-of-at-least-32-bytes!"
DAVE_SECRET_RAW = b"dave's binary secret \x00\x01\x02, 64 bytes or more as HS512 wants" + b"." * 16


class ConsumerTagConfig(PluginConfig):
    tag: str


class ConsumerTag(Plugin):
    """Marks the upstream request with its config's tag: shows which config (the consumer's or
    the route's) ran."""
    name = "test-consumer-tag"
    priority = 1000
    Config = ConsumerTagConfig

    def access(self, ctx: Any) -> None:
        ctx.set_upstream_header("X-Consumer-Tag", self.config.tag)


class Relocate(Plugin):
    """Rewrites the upstream target under /moved, keeping the query: an earlier rewrite that a
    credential hidden from the query must build on."""
    name = "test-relocate"

    def rewrite(self, ctx: Any) -> None:
        ctx.set_upstream_uri(f"/moved{ctx.path}?{ctx.query_string}")


def _pem_public(private_key: Any) -> str:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def consumers() -> list[dict[str, Any]]:
    return [
        {"username": "alice", "group_id": "g1", "labels": {"custom_id": "a-1"}, "plugins": {
            "key-auth": {"key": "alice-key"},
            "basic-auth": {"username": "alice", "password": "p:ss w0rd"},
            "jwt-auth": {"key": "alice-jwt", "secret": ALICE_SECRET},
            HERE + "ConsumerTag": {"tag": "alice-tag"},
        }},
        {"username": "bob", "group_id": "g2", "plugins": {
            "key-auth": {"key": "bob-key"},
            "basic-auth": {"username": "bob", "password": "bob-pw"},
            "jwt-auth": {"key": "bob-rsa", "algorithm": "RS256",
                         "public_key": _pem_public(RSA_KEY)},
        }},
        {"username": "carol", "plugins": {
            "key-auth": {"key": "carol-key"},
            # on a consumer, route_id lists the routes this consumer may use
            "consumer-restriction": {"type": "route_id", "whitelist": ["key", "tagged"]},
        }},
        {"username": "dave", "plugins": {
            "jwt-auth": {"key": "dave-jwt", "algorithm": "HS512", "base64_secret": True,
                         "secret": base64.b64encode(DAVE_SECRET_RAW).decode(),
                         "lifetime_grace_period": 60},
        }},
        {"username": "erin", "plugins": {
            "jwt-auth": {"key": "erin-ec", "algorithm": "ES256", "public_key": _pem_public(EC_KEY)},
        }},
        {"username": "grace", "plugins": {
            "jwt-auth": {"key": "grace-ps", "algorithm": "PS256", "public_key": _pem_public(RSA_KEY)},
        }},
        {"username": "heidi", "plugins": {
            "jwt-auth": {"key": "heidi-ed", "algorithm": "EdDSA", "public_key": _pem_public(ED_KEY)},
        }},
        {"username": "frank", "plugins": {"key-auth": {"key": "frank-key"}}},
        {"username": "guest"},
    ]


def routes() -> list[dict[str, Any]]:
    def route(route_id: str, plugins: dict[str, Any]) -> dict[str, Any]:
        return {"id": route_id, "uri": f"/{route_id}/*", "upstream_id": "up", "plugins": plugins}

    key = {"key-auth": {}}
    return [
        route("key", key),
        route("key-hide", {"key-auth": {"hide_credentials": True}}),
        route("key-custom", {"key-auth": {"header": "X-Api-Token", "query": "token"}}),
        route("moved", {"key-auth": {"hide_credentials": True}, HERE + "Relocate": {}}),
        route("anon", {"key-auth": {"anonymous_consumer": "guest"}}),
        route("tagged", {"key-auth": {}, HERE + "ConsumerTag": {"tag": "route-tag"}}),
        route("basic", {"basic-auth": {}}),
        route("basic-hide", {"basic-auth": {"hide_credentials": True}}),
        route("jwt", {"jwt-auth": {}}),
        route("jwt-hide", {"jwt-auth": {"hide_credentials": True}}),
        route("jwt-noexp", {"jwt-auth": {"claims_to_verify": ["nbf"]}}),
        route("wl-name", {**key, "consumer-restriction": {"whitelist": ["alice"]}}),
        route("bl-name", {**key, "consumer-restriction": {"blacklist": ["bob"]}}),
        route("wl-group", {**key, "consumer-restriction": {
            "type": "consumer_group_id", "whitelist": ["g1"], "rejected_code": 451,
            "rejected_msg": "not your group"}}),
        route("bl-group", {**key, "consumer-restriction": {
            "type": "consumer_group_id", "blacklist": ["g2"]}}),
        route("methods", {**key, "consumer-restriction": {
            "allowed_by_methods": [{"user": "bob", "methods": ["GET"]}]}}),
        route("restricted-open", {"consumer-restriction": {"whitelist": ["alice"]}}),
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Upstream]]:
    with Upstream("up") as upstream:
        port = free_port()
        config: dict[str, Any] = base_config(port)
        config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
        config["routes"] = routes()
        config["consumers"] = consumers()
        with GatewayProcess(tmp_path_factory.mktemp("auth"), config, workers=2) as gw:
            yield port, upstream
        assert "Traceback" not in gw.logs()


def request(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def proxied(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
            ) -> dict[str, Any]:
    """The echo of a request that must reach the upstream: its target and headers."""
    status, _, body = request(port, path, headers, method)
    assert status == 200, body
    echo = json.loads(body)
    echo["headers"] = {k: v for k, v in echo["headers"]}
    return echo


def refused(port: int, path: str, headers: dict[str, str] | None = None, status: int = 401,
            method: str = "GET") -> tuple[str, dict[str, str]]:
    """The message and headers of a request the gateway must answer itself."""
    got, response_headers, body = request(port, path, headers, method)
    assert got == status, body
    assert response_headers["content-type"] == "application/json"
    return json.loads(body)["message"], response_headers


def basic(username: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def hs256(claims: dict[str, Any], secret: str = ALICE_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


# -- key-auth --

def test_key_auth_header_attaches_the_consumer(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = proxied(port, "/key/x", {"apikey": "alice-key", "X-Consumer-Username": "mallory"})
    assert echo["headers"]["x-consumer-username"] == "alice"
    assert echo["headers"]["x-consumer-custom-id"] == "a-1"
    assert echo["headers"]["apikey"] == "alice-key"  # hide_credentials is off
    echo = proxied(port, "/key/x", {"apikey": "bob-key", "X-Consumer-Custom-Id": "forged"})
    assert echo["headers"]["x-consumer-username"] == "bob"
    assert "x-consumer-custom-id" not in echo["headers"]


def test_key_auth_repeated_header_is_one_joined_value(gateway: tuple[int, Upstream]) -> None:
    """Two apikey fields read as their comma-joined value (RFC 9110 5.3), which is no key: the
    compiled hook joins repeated lines as the Python path does rather than taking the first."""
    port, _ = gateway
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", "/key/x")
    conn.putheader("apikey", "alice-key")
    conn.putheader("APIKEY", "alice-key")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 401, body
    assert json.loads(body) == {"message": "Invalid API key in request"}


def test_key_auth_header_name_is_case_insensitive(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = proxied(port, "/key/x", {"ApiKey": "bob-key"})
    assert echo["headers"]["x-consumer-username"] == "bob"


def test_key_auth_query_argument(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = proxied(port, "/key/x?a=1&apikey=bob-key")
    assert echo["headers"]["x-consumer-username"] == "bob"
    assert echo["target"] == "/key/x?a=1&apikey=bob-key"


def test_key_auth_header_wins_over_query(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = proxied(port, "/key/x?apikey=bob-key", {"apikey": "alice-key"})
    assert echo["headers"]["x-consumer-username"] == "alice"
    message, _ = refused(port, "/key/x?apikey=alice-key", {"apikey": "nope"})
    assert message == "Invalid API key in request"


def test_key_auth_custom_header_and_query_names(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    assert proxied(port, "/key-custom/x", {"X-Api-Token": "alice-key"})["headers"][
        "x-consumer-username"] == "alice"
    assert proxied(port, "/key-custom/x?token=bob-key")["headers"]["x-consumer-username"] == "bob"
    message, _ = refused(port, "/key-custom/x", {"apikey": "alice-key"})
    assert message == "Missing API key in request"


def test_key_auth_missing_and_wrong_key(gateway: tuple[int, Upstream]) -> None:
    port, upstream = gateway
    mark = upstream.mark()
    message, headers = refused(port, "/key/x")
    assert message == "Missing API key in request"
    assert headers["www-authenticate"] == 'apikey realm="key"'
    message, _ = refused(port, "/key/x", {"apikey": "alice-key-but-wrong"})
    assert message == "Invalid API key in request"
    message, _ = refused(port, "/key/x?apikey=")
    assert message == "Invalid API key in request"
    upstream.assert_nothing_forwarded(mark)


def test_key_auth_hide_credentials(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = proxied(port, "/key-hide/x?a=1", {"apikey": "alice-key"})
    assert "apikey" not in echo["headers"]
    assert echo["headers"]["x-consumer-username"] == "alice"
    assert echo["target"] == "/key-hide/x?a=1"
    echo = proxied(port, "/key-hide/x?a=1&apikey=bob-key&b=%20two&apikey=bob-key")
    assert echo["target"] == "/key-hide/x?a=1&b=%20two"
    assert echo["headers"]["x-consumer-username"] == "bob"
    echo = proxied(port, "/key-hide/x?apikey=bob-key")
    assert echo["target"] == "/key-hide/x"


def test_hiding_a_query_credential_keeps_an_earlier_rewrite(gateway: tuple[int, Upstream]
                                                            ) -> None:
    port, _ = gateway
    echo = proxied(port, "/moved/x?apikey=alice-key&a=1")
    assert echo["target"] == "/moved/moved/x?a=1"
    assert echo["headers"]["x-consumer-username"] == "alice"


def test_anonymous_consumer_when_no_credential(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    assert proxied(port, "/anon/x")["headers"]["x-consumer-username"] == "guest"
    assert proxied(port, "/anon/x", {"apikey": "wrong"})["headers"]["x-consumer-username"] == "guest"
    assert proxied(port, "/anon/x", {"apikey": "bob-key"})["headers"]["x-consumer-username"] == "bob"


# -- consumers' own plugins --

def test_consumer_plugins_run_with_the_consumers_config(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    # alice configures the tag plugin herself: hers replaces the route's
    assert proxied(port, "/tagged/x", {"apikey": "alice-key"})["headers"][
        "x-consumer-tag"] == "alice-tag"
    assert proxied(port, "/key/x", {"apikey": "alice-key"})["headers"][
        "x-consumer-tag"] == "alice-tag"
    # bob does not: the route's runs
    assert proxied(port, "/tagged/x", {"apikey": "bob-key"})["headers"][
        "x-consumer-tag"] == "route-tag"
    assert "x-consumer-tag" not in proxied(port, "/key/x", {"apikey": "bob-key"})["headers"]


def test_consumer_restriction_on_a_consumer_limits_its_routes(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    assert proxied(port, "/key/x", {"apikey": "carol-key"})["headers"][
        "x-consumer-username"] == "carol"
    assert proxied(port, "/tagged/x", {"apikey": "carol-key"})["headers"][
        "x-consumer-tag"] == "route-tag"
    message, _ = refused(port, "/key-hide/x", {"apikey": "carol-key"}, status=403)
    assert message == "The route_id is forbidden."
    # the same route still serves consumers without that restriction
    assert proxied(port, "/key-hide/x", {"apikey": "alice-key"})["headers"][
        "x-consumer-username"] == "alice"


# -- basic-auth --

def test_basic_auth_accepts_the_consumers_password(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = proxied(port, "/basic/x", basic("alice", "p:ss w0rd"))
    assert echo["headers"]["x-consumer-username"] == "alice"
    assert echo["headers"]["authorization"].startswith("Basic ")
    echo = proxied(port, "/basic/x", {"Authorization": basic("bob", "bob-pw")["Authorization"]
                                      .replace("Basic", "basic")})
    assert echo["headers"]["x-consumer-username"] == "bob"


@pytest.mark.parametrize("headers, message", [
    ({}, "Missing authorization in request"),
    (basic("alice", "p:ss w0rd!"), "Invalid user authorization"),
    (basic("alice", "bob-pw"), "Invalid user authorization"),
    (basic("nobody", "p:ss w0rd"), "Invalid user authorization"),
    (basic("alice", ""), "Invalid user authorization"),
    ({"Authorization": "Basic !!!not-base64"}, "Invalid authorization in request"),
    ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
     "Invalid authorization in request"),
    ({"Authorization": "Bearer abc"}, "Invalid authorization in request"),
])
def test_basic_auth_refusals_carry_the_challenge(gateway: tuple[int, Upstream],
                                                 headers: dict[str, str], message: str) -> None:
    port, upstream = gateway
    mark = upstream.mark()
    got, response_headers = refused(port, "/basic/x", headers)
    assert got == message
    assert response_headers["www-authenticate"] == 'Basic realm="basic"'
    upstream.assert_nothing_forwarded(mark)


def test_basic_auth_hide_credentials(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = proxied(port, "/basic-hide/x", basic("bob", "bob-pw"))
    assert "authorization" not in echo["headers"]
    assert echo["headers"]["x-consumer-username"] == "bob"


# -- jwt-auth --

def test_jwt_hs256_in_header_with_and_without_bearer(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    token = hs256({"key": "alice-jwt", "exp": int(time.time()) + 600})
    for value in (f"Bearer {token}", token, f"bearer {token}"):
        echo = proxied(port, "/jwt/x", {"Authorization": value})
        assert echo["headers"]["x-consumer-username"] == "alice"
        assert echo["headers"]["authorization"] == value  # hide_credentials is off
    # the same token again (remembered after its first verification) still passes
    assert proxied(port, "/jwt/x", {"Authorization": token})["headers"][
        "x-consumer-username"] == "alice"


def test_jwt_rs256_es256_and_base64_hs512(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    exp = int(time.time()) + 600
    token = jwt.encode({"key": "bob-rsa", "exp": exp}, RSA_KEY, algorithm="RS256")
    assert proxied(port, "/jwt/x", {"Authorization": f"Bearer {token}"})["headers"][
        "x-consumer-username"] == "bob"
    token = jwt.encode({"key": "erin-ec", "exp": exp}, EC_KEY, algorithm="ES256")
    assert proxied(port, "/jwt/x", {"Authorization": f"Bearer {token}"})["headers"][
        "x-consumer-username"] == "erin"
    token = jwt.encode({"key": "dave-jwt", "exp": exp}, DAVE_SECRET_RAW, algorithm="HS512")
    assert proxied(port, "/jwt/x", {"Authorization": f"Bearer {token}"})["headers"][
        "x-consumer-username"] == "dave"


def test_jwt_ps256_and_eddsa(gateway: tuple[int, Upstream]) -> None:
    port, upstream = gateway
    exp = int(time.time()) + 600
    token = jwt.encode({"key": "grace-ps", "exp": exp}, RSA_KEY, algorithm="PS256")
    assert proxied(port, "/jwt/x", {"Authorization": f"Bearer {token}"})["headers"][
        "x-consumer-username"] == "grace"
    token = jwt.encode({"key": "heidi-ed", "exp": exp}, ED_KEY, algorithm="EdDSA")
    assert proxied(port, "/jwt/x", {"Authorization": f"Bearer {token}"})["headers"][
        "x-consumer-username"] == "heidi"
    # the consumer's algorithm only: RS256 by grace's own key, or another Ed25519 key, fail
    mark = upstream.mark()
    token = jwt.encode({"key": "grace-ps", "exp": exp}, RSA_KEY, algorithm="RS256")
    assert refused(port, "/jwt/x", {"Authorization": f"Bearer {token}"})[0] == "failed to verify jwt"
    token = jwt.encode({"key": "heidi-ed", "exp": exp}, ed25519.Ed25519PrivateKey.generate(),
                       algorithm="EdDSA")
    assert refused(port, "/jwt/x", {"Authorization": f"Bearer {token}"})[0] == "failed to verify jwt"
    upstream.assert_nothing_forwarded(mark)


def test_jwt_via_query_and_cookie(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    token = hs256({"key": "alice-jwt", "exp": int(time.time()) + 600})
    echo = proxied(port, f"/jwt/x?jwt={token}&q=1")
    assert echo["headers"]["x-consumer-username"] == "alice"
    assert echo["target"] == f"/jwt/x?jwt={token}&q=1"
    echo = proxied(port, "/jwt/x", {"Cookie": f"session=s1; jwt={token}"})
    assert echo["headers"]["x-consumer-username"] == "alice"
    assert echo["headers"]["cookie"] == f"session=s1; jwt={token}"


def test_jwt_hide_credentials(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    token = hs256({"key": "alice-jwt", "exp": int(time.time()) + 600})
    echo = proxied(port, "/jwt-hide/x", {"Authorization": f"Bearer {token}"})
    assert "authorization" not in echo["headers"]
    echo = proxied(port, f"/jwt-hide/x?q=1&jwt={token}")
    assert echo["target"] == "/jwt-hide/x?q=1"
    echo = proxied(port, "/jwt-hide/x", {"Cookie": f"session=s1; jwt={token}; theme=dark"})
    assert echo["headers"]["cookie"] == "session=s1; theme=dark"
    echo = proxied(port, "/jwt-hide/x", {"Cookie": f"jwt={token}"})
    assert "cookie" not in echo["headers"]
    assert echo["headers"]["x-consumer-username"] == "alice"


def test_jwt_time_claims(gateway: tuple[int, Upstream]) -> None:
    port, upstream = gateway
    now = int(time.time())
    mark = upstream.mark()
    expired = hs256({"key": "alice-jwt", "exp": now - 5})
    message, headers = refused(port, "/jwt/x", {"Authorization": f"Bearer {expired}"})
    assert message == "failed to verify jwt"
    assert headers["www-authenticate"] == 'Bearer realm="jwt"'
    not_yet = hs256({"key": "alice-jwt", "nbf": now + 300, "exp": now + 600})
    message, _ = refused(port, "/jwt/x", {"Authorization": f"Bearer {not_yet}"})
    assert message == "failed to verify jwt"
    upstream.assert_nothing_forwarded(mark)
    # a route that verifies only nbf lets the expired token through, not the early one
    assert proxied(port, "/jwt-noexp/x", {"Authorization": expired})["headers"][
        "x-consumer-username"] == "alice"
    refused(port, "/jwt-noexp/x", {"Authorization": not_yet})
    # dave's lifetime_grace_period (60 s) covers a token expired 10 s ago, not 120 s ago
    recent = jwt.encode({"key": "dave-jwt", "exp": now - 10}, DAVE_SECRET_RAW, algorithm="HS512")
    assert proxied(port, "/jwt/x", {"Authorization": recent})["headers"][
        "x-consumer-username"] == "dave"
    old = jwt.encode({"key": "dave-jwt", "exp": now - 120}, DAVE_SECRET_RAW, algorithm="HS512")
    refused(port, "/jwt/x", {"Authorization": old})


def test_jwt_expiry_applies_to_a_remembered_token(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    token = hs256({"key": "alice-jwt", "exp": int(time.time()) + 4})
    # each worker verifies the token and remembers it
    for _ in range(6):
        proxied(port, "/jwt/x", {"Authorization": token})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, _, _ = request(port, "/jwt/x", {"Authorization": token})
        if status == 401:
            break
        time.sleep(0.2)
    for _ in range(6):
        message, _ = refused(port, "/jwt/x", {"Authorization": token})
        assert message == "failed to verify jwt"


def test_jwt_signature_and_key_claim_refusals(gateway: tuple[int, Upstream]) -> None:
    port, upstream = gateway
    exp = int(time.time()) + 600
    mark = upstream.mark()
    cases = [
        (hs256({"key": "alice-jwt", "exp": exp}, "another-secret-of-at-least-32-bytes!!"),
         "failed to verify jwt"),
        # signed by another RSA key
        (jwt.encode({"key": "bob-rsa", "exp": exp}, OTHER_RSA_KEY, algorithm="RS256"),
         "failed to verify jwt"),
        # algorithm confusion: HS256 keyed with bob's public key
        (_forge_hs256({"key": "bob-rsa", "exp": exp}, _pem_public(RSA_KEY).encode()),
         "failed to verify jwt"),
        # a valid HS256 token of alice's claims with alg none
        (_unsigned({"key": "alice-jwt", "exp": exp}), "failed to verify jwt"),
        (hs256({"key": "mallory", "exp": exp}), "Invalid user key in JWT token"),
        (hs256({"sub": "alice-jwt", "exp": exp}), "missing user key in JWT token"),
        ("not-a-jwt", "JWT token invalid"),
        ("a.b.c", "JWT token invalid"),
    ]
    for token, message in cases:
        got, _ = refused(port, "/jwt/x", {"Authorization": f"Bearer {token}"})
        assert got == message, token
    # a payload changed after signing
    good = hs256({"key": "alice-jwt", "exp": exp, "role": "user"})
    head, _, sig = good.split(".")
    tampered = _b64(json.dumps({"key": "alice-jwt", "exp": exp, "role": "admin"}).encode())
    got, _ = refused(port, "/jwt/x", {"Authorization": f"{head}.{tampered}.{sig}"})
    assert got == "failed to verify jwt"
    message, _ = refused(port, "/jwt/x")
    assert message == "Missing JWT token in request"
    upstream.assert_nothing_forwarded(mark)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge_hs256(claims: dict[str, Any], secret: bytes) -> str:
    import hashlib
    import hmac
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def _unsigned(claims: dict[str, Any]) -> str:
    return _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode()) + "."


# -- consumer-restriction --

def test_whitelist_by_consumer_name(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    assert proxied(port, "/wl-name/x", {"apikey": "alice-key"})["headers"][
        "x-consumer-username"] == "alice"
    message, _ = refused(port, "/wl-name/x", {"apikey": "bob-key"}, status=403)
    assert message == "The consumer_name is forbidden."
    # authentication still comes first
    message, _ = refused(port, "/wl-name/x")
    assert message == "Missing API key in request"


def test_blacklist_by_consumer_name(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    message, _ = refused(port, "/bl-name/x", {"apikey": "bob-key"}, status=403)
    assert message == "The consumer_name is forbidden."
    assert proxied(port, "/bl-name/x", {"apikey": "alice-key"})["headers"][
        "x-consumer-username"] == "alice"


def test_whitelist_by_consumer_group(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    assert proxied(port, "/wl-group/x", {"apikey": "alice-key"})["headers"][
        "x-consumer-username"] == "alice"
    message, _ = refused(port, "/wl-group/x", {"apikey": "bob-key"}, status=451)
    assert message == "not your group"


def test_blacklist_by_consumer_group(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    message, _ = refused(port, "/bl-group/x", {"apikey": "bob-key"}, status=403)
    assert message == "The consumer_group_id is forbidden."
    assert proxied(port, "/bl-group/x", {"apikey": "alice-key"})["headers"][
        "x-consumer-username"] == "alice"


def test_consumer_without_a_group_meets_a_group_rule(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    # frank has no group_id: nothing to check the lists against (APISIX answers 401 too)
    for route in ("/bl-group/x", "/wl-group/x"):
        message, _ = refused(port, route, {"apikey": "frank-key"})
        assert message == "Missing authentication or identity verification."
    assert proxied(port, "/bl-name/x", {"apikey": "frank-key"})["headers"][
        "x-consumer-username"] == "frank"


def test_allowed_by_methods(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    assert proxied(port, "/methods/x", {"apikey": "bob-key"})["method"] == "GET"
    message, _ = refused(port, "/methods/x", {"apikey": "bob-key"}, status=403, method="POST")
    assert message == "The consumer_name is forbidden."
    # consumers the list does not name are not limited
    assert proxied(port, "/methods/x", {"apikey": "alice-key"}, method="POST")["method"] == "POST"


def test_restriction_without_authentication_is_401(gateway: tuple[int, Upstream]) -> None:
    port, upstream = gateway
    mark = upstream.mark()
    message, _ = refused(port, "/restricted-open/x", {"apikey": "alice-key"})
    assert message == "Missing authentication or identity verification."
    upstream.assert_nothing_forwarded(mark)


# -- config errors --

def write_config(tmp_path: Path, consumers: list[dict[str, Any]],
                 plugins: dict[str, Any] | None = None) -> Path:
    """The consumers, and a route with ``plugins`` (key-auth by default)."""
    return write_plugin_config(tmp_path, plugins if plugins is not None else {"key-auth": {}},
                               consumers)


def test_rs256_consumer_without_public_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, [
        {"username": "a", "plugins": {"jwt-auth": {"key": "k", "algorithm": "RS256"}}}])
    issues = config_issues(path, full=False)
    assert [p for p, _ in issues] == ["consumers[0].plugins.jwt-auth.public_key"]
    assert "required when algorithm is RS256" in issues[0][1]


@pytest.mark.parametrize("credential, where, words", [
    ({"key": "k", "algorithm": "RS256", "public_key": "-----BEGIN PUBLIC KEY-----\nxx\n"},
     "public_key", "not a usable RS256 public key"),
    ({"key": "k", "algorithm": "ES256", "public_key": _pem_public(RSA_KEY)},
     "public_key", "not a usable ES256 public key"),
    ({"key": "k", "algorithm": "RS256", "public_key": RSA_KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()}, "public_key", "is a private key"),
    ({"key": "k"}, "secret", "required when algorithm is HS256"),
    ({"key": "k", "secret": "not base64!", "base64_secret": True}, "secret", "not base64"),
    ({"key": "k", "secret": _pem_public(RSA_KEY)}, "secret", "asymmetric key"),
    ({"key": "k", "algorithm": "HS257", "secret": "s"}, "algorithm", "'HS257'"),
])
def test_jwt_consumer_config_errors(tmp_path: Path, credential: dict[str, Any], where: str,
                                    words: str) -> None:
    path = write_config(tmp_path, [{"username": "a", "plugins": {"jwt-auth": credential}}])
    issues = config_issues(path, full=False)
    assert [p for p, _ in issues] == [f"consumers[0].plugins.jwt-auth.{where}"], issues
    assert words in issues[0][1]


@pytest.mark.parametrize("plugin,credential", [
    ("jwt-auth", lambda key: {"key": key, "secret": ALICE_SECRET}),
    ("basic-auth", lambda key: {"username": key, "password": "pw"}),
])
def test_same_jwt_or_basic_credential_on_two_consumers_is_an_error(
        tmp_path: Path, plugin: str, credential: Any) -> None:
    path = write_config(tmp_path, [
        {"username": "a", "plugins": {plugin: credential("shared")}},
        {"username": "b", "plugins": {plugin: credential("other")}},
        {"username": "c", "plugins": {plugin: credential("shared")}},
    ])
    issues = config_issues(path)
    assert [p for p, _ in issues] == [f"consumers[2].plugins.{plugin}"], issues
    assert "'c'" in issues[0][1] and "'a'" in issues[0][1]


def test_same_key_on_two_consumers_is_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, [
        {"username": "a", "plugins": {"key-auth": {"key": "shared"}}},
        {"username": "b", "plugins": {"key-auth": {"key": "other"}}},
        {"username": "c", "plugins": {"key-auth": {"key": "shared"}}},
    ])
    issues = config_issues(path)
    assert [p for p, _ in issues] == ["consumers[2].plugins.key-auth"]
    assert "'c'" in issues[0][1] and "'a'" in issues[0][1] and "shared" not in issues[0][1]


def test_credential_on_a_route_and_route_settings_on_a_consumer(tmp_path: Path) -> None:
    path = write_config(tmp_path, [], plugins={"key-auth": {"key": "on-route"}})
    issues = config_issues(path)
    assert [p for p, _ in issues] == ["routes[0].plugins.key-auth"]
    assert "belong on a consumer" in issues[0][1]
    path = write_config(tmp_path, [
        {"username": "a", "plugins": {"basic-auth": {"username": "a", "password": "p",
                                                     "hide_credentials": True}}}])
    issues = config_issues(path)
    assert [p for p, _ in issues] == ["consumers[0].plugins.basic-auth"]
    assert "hide_credentials" in issues[0][1]
    path = write_config(tmp_path, [{"username": "a", "plugins": {"basic-auth": {"username": "a"}}}])
    assert config_issues(path) == [("consumers[0].plugins.basic-auth",
                                    "a consumer's basic-auth needs 'password'")]


def test_unknown_anonymous_consumer_and_empty_restriction(tmp_path: Path) -> None:
    path = write_config(tmp_path, [], plugins={"jwt-auth": {"anonymous_consumer": "ghost"}})
    assert config_issues(path) == [("routes[0].plugins.jwt-auth",
                                    "anonymous_consumer: no consumer named 'ghost'")]
    path = write_config(tmp_path, [], plugins={"consumer-restriction": {"type": "consumer_name"}})
    issues = config_issues(path, full=False)
    assert [p for p, _ in issues] == ["routes[0].plugins.consumer-restriction"]
    assert "whitelist, blacklist or allowed_by_methods" in issues[0][1]
    path = write_config(tmp_path, [], plugins={"consumer-restriction": {
        "type": "service_id", "whitelist": ["s"]}})
    issues = config_issues(path, full=False)
    assert [p for p, _ in issues] == ["routes[0].plugins.consumer-restriction.type"]


def test_valid_auth_config_passes_the_full_check(tmp_path: Path) -> None:
    config: dict[str, Any] = base_config(free_port())
    config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": 9}]}]
    config["routes"] = [dict(r, id=r["id"]) for r in routes()]
    config["consumers"] = consumers()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    loaded = load_and_check(str(path))
    assert len(loaded.consumers) == len(consumers())
