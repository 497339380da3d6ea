"""plugin_metadata's success path, end to end: cors' metadata (named lists of origins) from the
YAML ``plugin_metadata`` section reaches the plugin in every worker, and an Admin API write
replaces it on every worker; a bad body names its field."""
from __future__ import annotations

from pathlib import Path

import httpx

from tests.admin.support import KEY
from tests.support.gateway import GatewayProcess, base_config, http_get, wait_until
from tests.support.upstream import Upstream, free_port

METADATA = "/apisix/admin/plugin_metadata/cors"
SHOP = "https://shop.example"
BLOG = "https://blog.example"


def allowed(port: int, origin: str, tries: int = 16) -> set[str | None]:
    """The Access-Control-Allow-Origin answers to ``origin`` over ``tries`` fresh connections
    (SO_REUSEPORT spreads them over the workers)."""
    seen = set()
    for _ in range(tries):
        response, _ = http_get(port, "/x", {"Origin": origin})
        assert response.status == 200
        seen.add(response.getheader("Access-Control-Allow-Origin"))
    return seen


def test_cors_metadata_from_the_file_and_the_admin_api(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        config["gateway"]["admin"]["key"] = KEY
        config["routes"][0]["plugins"] = {"cors": {
            "allow_origins": "https://fixed.example",
            "allow_origins_by_metadata": ["partners"]}}
        config["plugin_metadata"] = {"cors": {"allow_origins": {"partners": SHOP}}}
        with GatewayProcess(tmp_path, config, workers=2) as gw:
            admin = httpx.Client(base_url=f"http://{config['gateway']['admin']['listen']}",
                                 headers={"X-API-KEY": KEY}, timeout=30)
            # from the file: the metadata's origin, and the route's own one
            assert allowed(gw.port, SHOP) == {SHOP}
            assert allowed(gw.port, "https://fixed.example") == {"https://fixed.example"}
            assert allowed(gw.port, BLOG) == {None}
            assert admin.get(METADATA).json()["value"]["allow_origins"] == {"partners": SHOP}

            # a write replaces the list on every worker
            reply = admin.put(METADATA, json={"allow_origins": {"partners": f"{BLOG},{SHOP}x"}})
            assert reply.status_code in (200, 201), reply.text
            wait_until(lambda: allowed(gw.port, BLOG, 4) == {BLOG}, 5, "the new origin served")
            assert allowed(gw.port, BLOG) == {BLOG}
            assert allowed(gw.port, SHOP) == {None}
            assert gw.cli("check").returncode == 0  # the file written back holds it, valid

            # a bad origin is refused with its place; the running metadata stays
            bad = admin.put(METADATA, json={"allow_origins": {"partners": "shop.example"}})
            assert bad.status_code == 400
            assert "allow_origins.partners" in bad.text and "is not an origin" in bad.text
            assert allowed(gw.port, BLOG, 4) == {BLOG}

            # deleted: the route's metadata names allow nothing any more
            assert admin.delete(METADATA).status_code == 200
            wait_until(lambda: allowed(gw.port, BLOG, 4) == {None}, 5, "the origin withdrawn")
            assert allowed(gw.port, "https://fixed.example") == {"https://fixed.example"}
            admin.close()
