"""Benchmark suite: raw model ceiling, our server (batching on/off), a FastAPI+pipeline baseline,
framework overhead and overload behaviour, side by side in one run; per model (bench/permodel.py) its
ceiling, saturation, start-up, memory and FLOPs against the machine's peak (bench/hardware.py); a GPU
profile (bench/gpu.py); a stage profile (bench/stages.py). See docs/performance.md.

Run it with ``.venv/bin/python -m bench [--quick]``; ``python -m bench --help`` lists the other suites
(`bench/__main__.py`). What the suites share is in `bench/harness.py` (a run's command line and record)
and `bench/common.py` (request bodies, payloads, statistics); process, Redis and picture helpers shared
with the tests are in `devtools/`. The orchestrating process (``bench.run``) is also the load
generator: it imports neither KServe nor the server's own model code (KServe's and tritonclient's
protobufs clash in one process, and the client must not share the server's interpreter). Everything
model-side runs in child processes.
"""
