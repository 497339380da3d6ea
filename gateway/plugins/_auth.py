"""What the authentication plugins share: finding a credential's consumer in O(1), telling a
consumer's credential from a route's settings, the 401 answers, attaching the consumer and
hiding the credential from the upstream.

An authentication plugin's config has two shapes (APISIX's ``schema`` and ``consumer_schema``):
on a consumer it is the credential (key-auth's ``key``), on a route or global rule it says where
to look for one (key-auth's ``header``). Both are one msgspec struct whose credential fields
default to ``UNSET``; ``bind`` knows where the instance sits and refuses the wrong shape.
"""
from __future__ import annotations

import json
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import unquote_plus

import msgspec

from gateway.plugins import Context, Response
from gateway.plugins.base import Plugin, PluginEnv

if TYPE_CHECKING:
    from gateway.plugins.consumers import ConsumerEntry, ConsumerIndex


def field_error(field: str, message: str) -> ValueError:
    """A ValueError for ``__post_init__`` that the config loader reports at the field's path."""
    return ValueError(f"{message} - at `$.{field}`")


def is_set(value: Any) -> bool:
    return value is not msgspec.UNSET


class CredentialIndex:
    """The consumers configuring one authentication plugin, by the value of one credential
    field (key-auth's ``key``, basic-auth's ``username``), built once per config version."""

    __slots__ = ("by_value", "owner_of", "duplicates", "__weakref__")

    def __init__(self, consumers: ConsumerIndex, plugin_name: str,
                 value_of: Callable[[Any], Any]) -> None:
        self.by_value: dict[Any, ConsumerEntry] = {}
        #: id(plugin instance) -> the consumer it belongs to
        self.owner_of: dict[int, ConsumerEntry] = {}
        #: id(plugin instance) -> username of the consumer that already has the same credential
        self.duplicates: dict[int, str] = {}
        for entry in consumers.entries:
            plugin = entry.plugins.get(plugin_name)
            if plugin is None:
                continue
            self.owner_of[id(plugin)] = entry
            value = value_of(plugin.config)
            if not is_set(value):
                continue  # the consumer's bind reports the missing credential
            first = self.by_value.setdefault(value, entry)
            if first is not entry:
                self.duplicates[id(plugin)] = first.username


# One index per (ConsumerIndex, plugin name): every route's instance of the plugin and every
# consumer's shares it, and it goes away with the config version.
_indexes: weakref.WeakKeyDictionary[ConsumerIndex, dict[str, CredentialIndex]] = \
    weakref.WeakKeyDictionary()


def credential_index(consumers: ConsumerIndex, plugin_name: str,
                     value_of: Callable[[Any], Any]) -> CredentialIndex:
    per_plugin = _indexes.setdefault(consumers, {})
    index = per_plugin.get(plugin_name)
    if index is None:
        index = per_plugin[plugin_name] = CredentialIndex(consumers, plugin_name, value_of)
    return index


def message_response(status: int, message: str,
                     headers: list[tuple[str, str]] | None = None) -> Response:
    """APISIX's error body: ``{"message": "..."}``."""
    body = json.dumps({"message": message}).encode()
    return Response(status, body, [("Content-Type", "application/json"), *(headers or [])])


def without_query_arg(query: str, name: str) -> str:
    """``query`` with every ``name=...`` argument removed; the others keep their encoding."""
    kept = [part for part in query.split("&")
            if part and unquote_plus(part.partition("=")[0]) != name]
    return "&".join(kept)


def hide_query_arg(ctx: Context, name: str) -> None:
    """Rewrites the upstream target without the query argument ``name``, on top of whatever
    target an earlier plugin chose."""
    current = ctx.upstream_path
    if current is not None:
        path, _, query = current.decode("latin-1").partition("?")
    else:
        path, query = ctx.path, ctx.query_string
    query = without_query_arg(query, name)
    ctx.set_upstream_uri(f"{path}?{query}" if query else path)


class AuthPlugin(Plugin, ABC):
    """Base of key-auth, basic-auth and jwt-auth.

    Subclasses name their credential fields (``CREDENTIAL_FIELDS``, set on a consumer only) and
    the field that identifies the consumer (``LOOKUP_FIELD``), and implement ``authenticate``.
    """

    credential = True
    CREDENTIAL_FIELDS: tuple[str, ...] = ()
    LOOKUP_FIELD: str = ""
    #: the WWW-Authenticate scheme of this plugin's 401 answers
    CHALLENGE_SCHEME: str = ""

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self.index: CredentialIndex | None = None
        self.anonymous: ConsumerEntry | None = None
        self._responses: dict[str, Response] = {}
        self.challenge_scheme: str = self.CHALLENGE_SCHEME

    # -- config --
    def bind(self, env: PluginEnv) -> None:
        index = credential_index(env.consumers, self.name,
                                 lambda config: getattr(config, self.LOOKUP_FIELD))
        owner = index.owner_of.get(id(self))
        if owner is not None:
            self.bind_consumer(owner, index)
        else:
            self.bind_route(env, index)

    def bind_consumer(self, owner: ConsumerEntry, index: CredentialIndex) -> None:
        defaults = type(self.config)()  # the route shape with nothing set is always valid
        route_only = [name for name in type(self.config).__struct_fields__
                      if name not in self.CREDENTIAL_FIELDS
                      and getattr(self.config, name) != getattr(defaults, name)]
        if route_only:
            raise ValueError(f"{', '.join(route_only)}: route settings, not valid on a consumer")
        if not is_set(getattr(self.config, self.LOOKUP_FIELD)):
            raise ValueError(f"a consumer's {self.name} needs '{self.LOOKUP_FIELD}'")
        first = index.duplicates.get(id(self))
        if first is not None:
            raise ValueError(f"consumer '{owner.username}' has the same {self.LOOKUP_FIELD} as "
                             f"consumer '{first}': a credential must identify one consumer")

    def credential_of(self, entry: ConsumerEntry) -> Self:
        """This plugin as configured on ``entry``: the consumer's credential."""
        plugin = entry.plugins[self.name]
        assert isinstance(plugin, type(self))
        return plugin

    def bind_route(self, env: PluginEnv, index: CredentialIndex) -> None:
        on_consumer_only = [name for name in self.CREDENTIAL_FIELDS
                            if is_set(getattr(self.config, name))]
        if on_consumer_only:
            raise ValueError(f"{', '.join(on_consumer_only)}: credential settings belong on a "
                             f"consumer, not on a route or global rule")
        self.index = index
        anonymous = getattr(self.config, "anonymous_consumer", None)
        if anonymous:
            self.anonymous = env.consumers.by_name.get(anonymous)
            if self.anonymous is None:
                raise ValueError(f"anonymous_consumer: no consumer named '{anonymous}'")

    # -- requests --
    def access(self, ctx: Context) -> Response | None:
        if self.index is None:
            return None  # a consumer's credential: nothing to run
        entry, error = self.authenticate(ctx)
        if entry is None:
            if self.anonymous is None:
                return self.reject(error)
            entry = self.anonymous
        self.attach(ctx, entry)
        return None

    @abstractmethod
    def authenticate(self, ctx: Context) -> tuple[ConsumerEntry | None, str]:
        """The request's consumer, or None and the message of the 401."""

    def reject(self, message: str) -> Response:
        response = self._responses.get(message)
        if response is None:
            realm = getattr(self.config, "realm", "")
            challenge = [("WWW-Authenticate", f'{self.challenge_scheme} realm="{realm}"')] \
                if self.challenge_scheme else []
            response = self._responses[message] = message_response(401, message, challenge)
        return response

    @staticmethod
    def attach(ctx: Context, entry: ConsumerEntry) -> None:
        ctx.attach_consumer(entry)
        # Set (not added): a client cannot pose as a consumer by sending these itself.
        ctx.set_upstream_header("X-Consumer-Username", entry.username)
        custom_id = entry.labels.get("custom_id")
        if custom_id is not None:
            ctx.set_upstream_header("X-Consumer-Custom-Id", custom_id.encode())  # any UTF-8
        else:
            ctx.remove_upstream_header("X-Consumer-Custom-Id")
