"""Benchmarks of ragtune's services: ``make bench`` (all) or ``make bench NAME=<name>`` (one).

Each benchmark measures a figure against a baseline taken in the same run on the same machine,
prints one summary line per figure, and writes ``bench/results/<name>.json``.
"""
