"""The CPU-bound handler of the scaling scenario (`benchmarks.scaling`).

``burn()`` runs a pure-Python loop of ``SCALING_WORK_ITERATIONS`` steps, which
the harness calibrates to about 1 ms: each request then costs its worker a
millisecond of CPU, so the workers, not the load generator, are the
bottleneck, and two workers on two cores can show whether they scale.
"""

import os

WORK_ENV = "SCALING_WORK_ITERATIONS"


def burn(iterations: int | None = None) -> int:
    count = int(os.environ.get(WORK_ENV, "20000")) if iterations is None else iterations
    total = 0
    for i in range(count):
        total += i * i
    return total
