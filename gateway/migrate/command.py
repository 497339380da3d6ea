"""``gateway import apisix``: convert, validate with the checker ``gateway check`` uses, and
write the result with the list of what was not carried over at its top."""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import yaml

from gateway import __version__
from gateway.atomic_file import write_atomically
from gateway.config import ConfigError
from gateway.migrate.apisix import convert
from gateway.migrate.schema_walk import Unsupported
from gateway.server import yaml_roundtrip


def render(config: dict[str, object], source: str, unsupported: list[Unsupported]) -> str:
    root = yaml_roundtrip.from_plain(config)
    header = [f"Imported from {source} by `gateway import apisix` (gateway {__version__})."]
    if unsupported:
        header.append(f"Not carried over ({len(unsupported)}):")
        header += [f"  {item}" for item in unsupported]
    else:
        header.append("Everything was carried over.")
    if not config:
        return "".join(f"# {line}\n" for line in header) + "{}\n"
    root.yaml_set_start_comment("\n".join(header))
    return yaml_roundtrip.dump(root)


def import_apisix(source: str, output: str | None) -> int:
    from gateway.server.master import check_bytes

    try:
        text = Path(source).read_text(encoding="utf-8")
        document = yaml.safe_load(io.StringIO(text))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        print(f"gateway import: cannot read {source}: {exc}", file=sys.stderr)
        return 1
    if not isinstance(document, dict):
        print(f"gateway import: {source} is not an APISIX config (expected a mapping of sections "
              "such as routes and upstreams)", file=sys.stderr)
        return 1
    result = convert(document)
    for item in result.unsupported:
        print(f"{source}: not carried over: {item}", file=sys.stderr)
    rendered = render(result.config, os.path.basename(source), result.unsupported)
    target = output or "<stdout>"
    try:
        # the output's relative paths (ssl certificates) are resolved next to the output
        check_bytes(rendered.encode(), output or os.path.join(os.getcwd(), "gateway.yaml"))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"gateway import: the result would not load ({len(exc.issues)} error(s)); "
              f"{target} not written", file=sys.stderr)
        return 1
    if output is None:
        sys.stdout.write(rendered)
    else:
        write_atomically(Path(output), rendered.encode(), 0o600)  # consumer credentials
        print(f"gateway import: wrote {output} ({len(result.config.get('routes', []))} routes, "
              f"{len(result.unsupported)} item(s) not carried over)", file=sys.stderr)
    return 0
