"""Guest test suites: expectations (spec.py), building (build.py), running (runner.py),
reports (junit.py), the pytest plugin (pytest_plugin.py)."""
