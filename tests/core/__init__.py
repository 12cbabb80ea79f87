"""The public API on a dramatiq Worker in the test's own process, over every backend."""
