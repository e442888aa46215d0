"""Store contract suites: one test class per store role, to subclass for every backend."""
