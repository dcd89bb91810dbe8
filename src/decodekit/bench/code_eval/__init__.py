"""Code-generation evaluation: the problems (tasks.py), the sandbox that runs a reply with its tests
(sandbox.py), scoring the rows of a run (score.py) and the statistics of pass@1 (stats.py)."""
