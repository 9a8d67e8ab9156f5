"""Fleet planning: perf model, trace-driven simulator, GPU-mix optimizer, reports.

Pure Python and independent of Ray, so a plan runs on a laptop from a trace file.
"""
