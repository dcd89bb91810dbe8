"""The benchmark harness: suites in Spec-Bench's format (suites.py), the methods and settings of a run checked
before any model loads (plan.py), a runner that puts decodekit's methods and external baselines (baselines/)
through the same prompts in one process (run.py), typed result rows (rows.py), metrics, reports, plots and an
HTML viewer of the step trace (report/), and the comparison of two runs (compare.py). The `decodekit bench`
command (cli/bench.py) drives it."""
