"""`harness bench`: timing one training step per backend under a fair protocol.

`suite` (shapes and the measurements), `timing` (clocks, paired ratios), `threads` and
`workers` (thread pinning, isolated worker processes), `repro` (reproducibility across
invocations), `report` and `plot` (what is written), `command` (the CLI entry point).
The protocol and its history: docs/benchmarking.md.
"""
