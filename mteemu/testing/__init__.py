"""Guest test suites: expectations (spec.py), building (build.py), running (runner.py),
reports (reports.py: JUnit XML and JSON), sharding (shard.py), `mteemu test` (cli.py), the
pytest plugin (pytest_plugin.py)."""
