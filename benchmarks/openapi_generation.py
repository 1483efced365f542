"""A large app's OpenAPI document, rawbg and FastAPI: ``python -m benchmarks.openapi_generation``.

One app of ``--routes`` routes (500 by default), written once and built on each
framework with only the import line changed: every route has a path
parameter, query parameters with checks, a dependency with its own header
parameter, and every second route a model body and a response model (one of
25 model families, each with a nested model and an enum). Each measurement
runs in a fresh process that imports the framework and builds the app (timed:
FastAPI makes its pydantic adapters there, rawbg only when the document is
first asked for): one times the first ``app.openapi()`` (the document is built on the first request
and kept) and the second (kept), another measures the memory the first call
allocates (tracemalloc's peak, which slows it down: so a process of its own).
The rounds alternate rawbg and FastAPI; the table gives each round and the
median ratios.
Run it under ``flock /tmp/rawbg-bench.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

FRAMEWORKS = {
    "rawbg": "from rawbg import App as FastAPI, Body, Depends, Header, Path, Query",
    "fastapi": "from fastapi import FastAPI, Body, Depends, Header, Path, Query",
}

APP = """
import enum
from typing import Annotated
from pydantic import BaseModel, Field
{imports}

app = FastAPI(title="Large", version="1.0.0")
"""

FAMILY = """
class Kind{n}(str, enum.Enum):
    a = "a"
    b = "b"


class Part{n}(BaseModel):
    label: str = Field(max_length=50)
    weight: float = Field(gt=0)


class Item{n}(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(gt=0)
    kind: Kind{n} = Kind{n}.a
    parts: list[Part{n}] = []
    note: str | None = None


class ItemOut{n}(Item{n}):
    id: int


def caller{n}(x_caller: Annotated[str | None, Header()] = None, trace: bool = False):
    return x_caller
"""

ROUTE_WITH_BODY = '''
@app.put("/r{i}/{{item_id}}", response_model=ItemOut{n}, tags=["t{n}"])
async def replace{i}(
    item_id: Annotated[int, Path(ge=1)],
    item: Item{n},
    who: Annotated[str | None, Depends(caller{n})],
    dry_run: bool = False,
):
    """Replace one item."""
    return {{"id": item_id, **item.model_dump()}}
'''

ROUTE_WITHOUT_BODY = """
@app.get("/r{i}/{{item_id}}", tags=["t{n}"])
async def read{i}(
    item_id: Annotated[int, Path(ge=1)],
    who: Annotated[str | None, Depends(caller{n})],
    q: Annotated[str | None, Query(min_length=2, max_length=50)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
):
    return {{"id": item_id}}
"""

MEASURE = """
import gc, json, sys, time, tracemalloc
source = sys.stdin.read()
namespace = {"__name__": "large_app"}
built = time.perf_counter()
exec(compile(source, "large_app.py", "exec"), namespace)
built = time.perf_counter() - built
app = namespace["app"]
gc.collect()
if sys.argv[1] == "memory":
    tracemalloc.start()
    document = app.openapi()
    print(json.dumps({"peak_bytes": tracemalloc.get_traced_memory()[1]}))
else:
    started = time.perf_counter()
    document = app.openapi()
    elapsed = time.perf_counter() - started
    started = time.perf_counter()
    app.openapi()
    cached = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "cached_seconds": cached, "build_seconds": built,
                      "bytes": len(json.dumps(document, sort_keys=True))}))
"""


def app_source(framework: str, routes: int) -> str:
    families = 25
    parts = [APP.format(imports=FRAMEWORKS[framework])]
    parts += [FAMILY.format(n=n) for n in range(families)]
    for i in range(routes):
        template = ROUTE_WITH_BODY if i % 2 else ROUTE_WITHOUT_BODY
        parts.append(template.format(i=i, n=i % families))
    return textwrap.dedent("\n".join(parts))


def measure(framework: str, routes: int) -> dict[str, float]:
    result: dict[str, float] = {}
    for what in ("time", "memory"):
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, what],
            input=app_source(framework, routes),
            capture_output=True,
            text=True,
            check=True,
        )
        result.update(json.loads(done.stdout))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in FRAMEWORKS}
    print(f"{args.routes} routes; each round: rawbg, then FastAPI, each in a fresh process")
    print(
        f"{'round':>5} {'framework':>9} {'build ms':>9} {'ms':>9} {'peak MiB':>9} {'cached µs':>10}"
    )
    for round_number in range(1, args.rounds + 1):
        for name in FRAMEWORKS:
            result = measure(name, args.routes)
            results[name].append(result)
            print(
                f"{round_number:>5} {name:>9} {result['build_seconds'] * 1000:>9.1f} "
                f"{result['seconds'] * 1000:>9.1f} "
                f"{result['peak_bytes'] / 2**20:>9.1f} {result['cached_seconds'] * 1e6:>10.1f}"
            )
    ours, theirs = results["rawbg"], results["fastapi"]
    same_size = {r["bytes"] for r in ours} == {r["bytes"] for r in theirs}
    time_ratio = statistics.median(r["seconds"] for r in ours) / statistics.median(
        r["seconds"] for r in theirs
    )
    memory_ratio = statistics.median(r["peak_bytes"] for r in ours) / statistics.median(
        r["peak_bytes"] for r in theirs
    )
    print(f"median time rawbg/FastAPI: {time_ratio:.2f}; median peak memory: {memory_ratio:.2f}")
    print(f"documents of the same size on both: {same_size} ({ours[0]['bytes']:.0f} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
