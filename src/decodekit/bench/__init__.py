"""The benchmark harness: suites in Spec-Bench's format, a runner that puts decodekit's methods and external
baselines through the same prompts in one process, metrics, reports, plots, an HTML viewer of the step trace,
and the comparison of two runs. `decodekit bench` (command.py) drives it."""
