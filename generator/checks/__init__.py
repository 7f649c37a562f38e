"""`kgen check`: checks derived from the lab, run as pytest tests on testinfra hosts.

`plan.py` asks each kind (`kinds/`, one module per kind: its planning and its
judging) for the lab's checks; `runner.py` runs them as a pytest session
(`test_datapath.py`, one test per check) with kgen's pytest plugin's fixtures
(`generator.pytest_plugin`, `lab.py`); `batch.py` runs the probes, batched per
container and in parallel; `report.py` prints the table, JSON and GitHub's
summary.
"""
