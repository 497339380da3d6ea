"""``gateway config export`` and ``gateway config import``: the resources between a YAML file
and etcd, with the etcd settings of a node file (``-c``).

Export writes what etcd holds, as written (``${VAR}`` unexpanded), in the sections of a config
file. Import makes etcd hold exactly the file's resources (keys under the prefix that the file
does not have are deleted): the file is checked first like any config file (nothing is written
when it is invalid), then written in one transaction when it fits in etcd's --max-txn-ops (128
by default), else in transactions of that size, ordered so that what a resource names is
written before it and deleted after it.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import yaml

from gateway.config import Config, ConfigError, EtcdStore
from gateway.etcd.client import EtcdClient, EtcdError, b64, by_creation
from gateway.etcd.keys import WRITE_ORDER, document_resources, key_of, sections

#: The sections of an exported file, in the order config files have them.
FILE_ORDER = ("upstreams", "routes", "consumers", "global_rules", "ssls", "plugin_metadata")
#: etcd's default --max-txn-ops.
MAX_TXN_OPS = 128


def node_store(path: str) -> EtcdStore | str:
    """The etcd settings of a node file, or why there are none."""
    from gateway.server.checks import load_and_check

    try:
        config: Config = load_and_check(path)
    except ConfigError as exc:
        return str(exc)
    if config.gateway.etcd is None:
        return f"{path}: not in etcd mode (gateway.store: {{type: etcd, ...}})"
    return config.gateway.etcd


def export_config(node_file: str, to: str | None) -> int:
    settings = node_store(node_file)
    if isinstance(settings, str):
        return fail(settings)
    try:
        revision, data = asyncio.run(read_all(settings))
    except EtcdError as exc:
        return fail(f"etcd: {exc}")
    text = f"# exported from etcd {settings.prefix} at revision {revision}\n" + \
        yaml.safe_dump({k: data[k] for k in FILE_ORDER if data.get(k)}, sort_keys=False, allow_unicode=True)
    if to is None:
        sys.stdout.write(text)
    else:
        with open(to, "w", encoding="utf-8") as fh:
            fh.write(text)
        count = sum(len(v) for v in data.values())
        print(f"gateway: {count} resources of etcd revision {revision} written to {to}", file=sys.stderr)
    return 0


async def read_all(settings: EtcdStore) -> tuple[int, dict[str, Any]]:
    client = EtcdClient(settings)
    try:
        revision, kvs = await client.range_prefix(settings.prefix + "/")
    finally:
        await client.close()
    data, _, issues = sections(settings.prefix, [(kv.key, kv.value) for kv in by_creation(kvs)],
                                 expand=False)
    for issue in issues:
        print(f"gateway: skipped {issue}", file=sys.stderr)
    return revision, data


def import_config(node_file: str, file: str) -> int:
    from gateway.server.checks import check_bytes

    settings = node_store(node_file)
    if isinstance(settings, str):
        return fail(settings)
    try:
        with open(file, "rb") as fh:
            raw = fh.read()
        check_bytes(raw, file)  # every issue, with its line, before anything is written
        document = yaml.safe_load(raw)
    except OSError as exc:
        return fail(f"cannot read {file}: {exc.strerror or exc}")
    except ConfigError as exc:
        return fail(f"{exc}\n{file}: {len(exc.issues)} error(s); nothing was written to etcd")
    puts = [(key_of(settings.prefix, kind, name), value) for kind, name, value in document_resources(document)]
    try:
        revision, batches = asyncio.run(replace_all(settings, puts))
    except EtcdError as exc:
        return fail(f"etcd: {exc}")
    how = "one transaction" if batches == 1 else f"{batches} transactions"
    print(f"gateway: {len(puts)} resources from {file} are etcd's {settings.prefix} at revision "
          f"{revision} ({how})")
    return 0


async def replace_all(settings: EtcdStore, puts: list[tuple[str, Any]]) -> tuple[int, int]:
    """Puts every resource and deletes the other keys under the prefix; (revision, transactions)."""
    client = EtcdClient(settings)
    try:
        _, existing = await client.range_prefix(settings.prefix + "/", keys_only=True)
        wanted = {key for key, _ in puts}
        rank = {name: i for i, name in enumerate(WRITE_ORDER)}

        def order(key: str) -> int:
            return rank.get(key[len(settings.prefix) + 1:].partition("/")[0], len(rank))
        ops: list[dict[str, Any]] = [{"request_put": {"key": b64(key), "value": b64(orjson.dumps(value))}}
                                     for key, value in puts]
        stale = sorted((kv.key for kv in existing if kv.key not in wanted), key=order, reverse=True)
        ops += [{"request_delete_range": {"key": b64(key)}} for key in stale]
        revision, batches = 0, 0
        for start in range(0, len(ops), MAX_TXN_OPS):
            _, revision, _ = await client.txn([], ops[start:start + MAX_TXN_OPS])
            batches += 1
        return revision, batches
    finally:
        await client.close()


def fail(message: str) -> int:
    print(f"gateway: {message}", file=sys.stderr)
    return 2
