"""``request-id``: every request carries an id (APISIX's keys: ``header_name`` "X-Request-Id",
``include_in_response`` true, ``algorithm`` "uuid" | "nanoid" | "range_id" with
``range_id: {char_set, length}``). An id the client sent is kept; otherwise one is generated
and sent upstream. The response gets it unless the upstream already answered with that
header. Other plugins and the access log read it as the ``$request_id`` variable of
``vars`` expressions, templates and keys (``gateway.requestvars``), which without this plugin
is a random id made on first use, as nginx's is.
"""
from __future__ import annotations

import os
import secrets
from typing import Annotated, Literal

import msgspec

from gateway._proto import RequestIdRewrite
from gateway.plugins import Context
from gateway.plugins._headers import check_header_name
from gateway.plugins.base import Plugin, PluginConfig

NANOID_ALPHABET = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NANOID_SIZE = 21


class RangeId(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    char_set: Annotated[str, msgspec.Meta(min_length=6)] = \
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    length: Annotated[int, msgspec.Meta(ge=6)] = 16


class RequestIdConfig(PluginConfig):
    header_name: str = "X-Request-Id"
    include_in_response: bool = True
    algorithm: Literal["uuid", "nanoid", "range_id"] = "uuid"
    range_id: RangeId = msgspec.field(default_factory=RangeId)

    def __post_init__(self) -> None:
        check_header_name(self.header_name, "header_name")


def uuid4() -> str:
    """A random (version 4) UUID as text; the uuid module's object is not needed here."""
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_string(alphabet: str, size: int) -> str:
    choice = secrets.choice
    return "".join(choice(alphabet) for _ in range(size))


class RequestId(Plugin):
    name = "request-id"
    priority = 12015
    Config = RequestIdConfig

    def __init__(self, config: RequestIdConfig) -> None:
        super().__init__(config)
        self.header = config.header_name
        self.lheader = config.header_name.lower()
        if config.algorithm == "uuid":
            self.generate = uuid4
        elif config.algorithm == "nanoid":
            self.generate = lambda: random_string(NANOID_ALPHABET, NANOID_SIZE)
        else:
            char_set, length = config.range_id.char_set, config.range_id.length
            self.generate = lambda: random_string(char_set, length)
        native = RequestIdRewrite(self, "rewrite")
        native.configure(config.header_name, config.include_in_response,
                         config.algorithm == "uuid")
        self.native_hooks = {"rewrite": native}

    def rewrite(self, ctx: Context) -> None:
        request_id = ctx.header(self.lheader)
        if not request_id:
            request_id = self.generate()
            ctx.set_upstream_header(self.header, request_id)
        ctx.state["request_id"] = request_id
        if self.config.include_in_response:
            # the upstream's own id header, if it sends one, is kept (as before)
            ctx.set_default_response_header(self.header, request_id)
