"""Writes the seed corpora of the cargo-fuzz targets into fuzz/corpus/<target>/ (not committed:
they are made from ../shared/conformance and the tests each time).

    python fuzz/make_seeds.py

Each target's input format is in its source (fuzz_targets/*.rs); the head targets take a
control byte first, written here as 0 (default limits, no cut) and 1 (tight limits).
"""
from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import seeds  # noqa: E402


def write(target: str, inputs: list[bytes]) -> int:
    folder = HERE / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    for data in inputs:
        (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)
    return len(set(inputs))


def main() -> None:
    if not seeds.conformance_present():
        print(f"make_seeds: {seeds.CONFORMANCE} is absent: seeding from the tests' own vectors only")
    rng = random.Random(13)
    counts = {
        "request_head": write("request_head", [bytes([c]) + r for r in seeds.requests() for c in (0, 0x81)]),
        "response_head": write("response_head", [bytes([c]) + r for r in seeds.responses() for c in (0, 0x81)]),
        "chunked": write("chunked", [bytes([rng.randrange(256)]) + b for b in seeds.chunked_bodies()]),
        "path_normalise": write("path_normalise", seeds.paths()),
        # a program of route-set and lookup bytes: random ones reach every table entry
        "router": write("router", [rng.randbytes(rng.randrange(8, 120)) for _ in range(64)]),
        "config": write("config", seeds.configs()),
    }
    print("make_seeds: " + ", ".join(f"{t} {n}" for t, n in counts.items()))


if __name__ == "__main__":
    main()
