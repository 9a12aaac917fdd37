"""The lab's measurements: load on the server, and where the time of a prediction goes.

Each takes a running deployment and returns a result that shows itself as
a table and a chart in a notebook.

    load.py     the HTTP load generator (``POST /api/predict``)
    timing.py   ``time_predictions``, ``step_times``, ``compare_steps``
    sweep.py    ``sweep``: throughput and latency over workers x concurrency
    compare.py  ``compare_engines``: keras against onnx, in one run
    bench.py    ``labkit bench``: one prediction's time, by stage
"""
