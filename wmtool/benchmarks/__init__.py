"""The benchmark records' library: writing a record (`record`), tables and pictures made from
records (`tables`, `record_sections`, `suite_table`, `suite_plot`), aggregate statistics
(`aggregate`) and published-curve arithmetic (`curves`).

The measuring scripts in recipes/bench/ import it as `wmtool.benchmarks`; nothing in the
engine, the models or the CLI imports it (tests/test_style.py keeps that arrow one way).
"""
