"""The Admin API's write-back re-renders one resource of the file (yaml_splice): the text it
produces must load to the data the write asked for, keep every untouched byte, and otherwise
decline (the caller then renders the whole document)."""
from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import yaml
from hypothesis import given, settings

from gateway.server import yaml_roundtrip
from gateway.server.yaml_splice import SplicedFile

KEYS = {"routes": "id", "upstreams": "id", "consumers": "username"}

TEXT = """\
# a config with comments
gateway:
  listen: ["127.0.0.1:9080"]

upstreams:
  # the backend
  - id: backend
    nodes: [{host: 127.0.0.1, port: 1}]   # one node
  - {id: flow, nodes: [{host: 127.0.0.1, port: 2}]}

routes:
# routes at column 0
- id: a
  uri: /a    # a comment on a's last line
  desc: |
    # not a comment: text of a block scalar

# above b
- id: b
  uri: /b
  plugins:
    mocking: {response_status: 200}
- id: c
  uri: /c

# the consumers
consumers:
    -   username: alice
        plugins: {key-auth: {key: k}}
    -   username: bob
#END
"""

names = st.sampled_from(["a", "b", "c", "d", "backend", "flow", "new", "alice", "bob", "carol"])
values = st.sampled_from([
    {"uri": "/x"}, {"uri": "/y", "plugins": {"mocking": {"response_example": "yes"}}},
    {"uri": "/z", "methods": ["GET", "POST"], "desc": "multi\nline # x", "priority": 2},
    {"nodes": [{"host": "127.0.0.1", "port": 9}], "type": "chash", "key": "remote_addr"},
])
edits = st.lists(st.tuples(st.sampled_from(list(KEYS)), names, st.none() | values), max_size=8)


def applied(data: dict[str, Any], section: str, name: str, value: Any) -> None:
    items = data[section]
    key = KEYS[section]
    found = [i for i, item in enumerate(items) if item[key] == name]
    if value is None:
        if found:
            del items[found[0]]
    elif found:
        items[found[0]] = value
    else:
        items.append(value)


def test_an_unedited_file_renders_to_its_own_bytes() -> None:
    spliced = SplicedFile.parse(TEXT, KEYS)
    assert set(spliced.sections) == set(KEYS)
    assert spliced.render() == TEXT


@settings(max_examples=300, deadline=None)
@given(edits)
def test_edits_load_as_asked_and_keep_the_rest(changes: list[Any]) -> None:
    spliced = SplicedFile.parse(TEXT, KEYS)
    expected = yaml.safe_load(TEXT)
    text = TEXT
    declined = False
    for section, name, value in changes:
        body = None if value is None else {KEYS[section]: name, **value}
        result = spliced.edited(section, name, None if body is None else (lambda b=body: yaml_roundtrip.dump_item(b)))
        if result is None:  # declined: the whole document is rendered; start again from it
            declined = True
            applied(expected, section, name, body)
            doc = yaml_roundtrip.load(text)
            current = {k: yaml_roundtrip.to_plain(doc.get(k)) for k in KEYS}
            applied(current, section, name, body)
            for k in KEYS:
                doc[k] = yaml_roundtrip.from_plain(current[k])
            text = yaml_roundtrip.dump(doc)
            spliced = SplicedFile.parse(text, KEYS)
        else:
            text, keep = result
            keep()
            applied(expected, section, name, body)
        assert yaml.safe_load(text) == expected
        assert spliced.render() == text
    assert declined or text.endswith("#END\n")  # the file's end marker stays last


def test_untouched_resources_keep_their_bytes() -> None:
    spliced = SplicedFile.parse(TEXT, KEYS)
    result = spliced.edited("routes", "b", lambda: yaml_roundtrip.dump_item({"id": "b", "uri": "/b2"}))
    assert result is not None
    text, _ = result
    assert text == TEXT.replace("- id: b\n  uri: /b\n  plugins:\n    mocking: {response_status: 200}\n",
                                "- id: b\n  uri: /b2\n")
    assert "# above b" in text and "# not a comment" in text


def test_declines_what_it_cannot_cut() -> None:
    flow = "routes: [{id: a, uri: /a}]\n"
    assert SplicedFile.parse(flow, KEYS).edited("routes", "a", lambda: "- id: a\n") is None
    no_section = "gateway: {}\n"
    assert SplicedFile.parse(no_section, KEYS).edited("routes", "a", lambda: "- id: a\n") is None
    old_mac = "routes:\r- id: a\r  uri: /a\r"
    assert SplicedFile.parse(old_mac, KEYS).edited("routes", "a", lambda: "- id: a\n") is None
