"""The test suite: a package, so tests, bench scripts and child processes import ``tests.helpers.*``."""
