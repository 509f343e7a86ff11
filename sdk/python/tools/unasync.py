"""Makes `scaivault_sdk/_async_api.py` from `scaivault_sdk/_api.py`: the same methods, awaited.

    python sdk/python/tools/unasync.py          # rewrite _async_api.py
    python sdk/python/tools/unasync.py --check  # exit 1 if it is out of date

One description of each method (the blocking one), so the two clients cannot drift apart.
"""

from __future__ import annotations

import pathlib
import re
import sys

PKG = pathlib.Path(__file__).resolve().parents[1] / "scaivault_sdk"


def convert(src: str) -> str:
    out = src.replace(
        '"""The blocking API: `Client.secrets`, `.policies`, `.rotation`, `.audit`, `.auth`, `.subscriptions`.',
        '"""The awaited API: `AsyncClient.secrets`, `.policies`, `.rotation`, `.audit`, `.auth`, `.subscriptions`.',
    )
    out = out.replace(
        "`_async_api.py` is made from this file by `sdk/python/tools/unasync.py` (every `run` awaited,\n"
        "every iterator asynchronous); edit this one and run the tool. A test checks they agree.",
        "Made from `_api.py` by `sdk/python/tools/unasync.py`: do not edit; edit `_api.py` and run it.",
    )
    out = out.replace("from typing import Any, Iterator", "from typing import Any, AsyncIterator")
    out = out.replace("SyncTransport", "AsyncTransport")
    out = re.sub(r"^class (\w+)", r"class Async\1", out, flags=re.M)
    out = out.replace("-> Iterator[", "-> AsyncIterator[")
    # A method whose body runs or collects a call is awaited; one that pages stays a plain def
    # returning an async iterator.
    methods = re.split(r"(?=^    def )", out, flags=re.M)
    done = []
    for m in methods:
        if m.startswith("    def ") and re.search(r"return self\._t\.(run|collect)\(", m):
            m = "    async def " + m[len("    def ") :]
            m = re.sub(r"return self\._t\.(run|collect)\(", r"return await self._t.\1(", m)
        done.append(m)
    return "".join(done)


def main() -> int:
    want = convert((PKG / "_api.py").read_text())
    target = PKG / "_async_api.py"
    if "--check" in sys.argv:
        if not target.exists() or target.read_text() != want:
            print("scaivault_sdk/_async_api.py is out of date: run python sdk/python/tools/unasync.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(want)
    return 0


if __name__ == "__main__":
    sys.exit(main())
