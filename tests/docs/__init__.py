"""The documentation's examples and migration guide, run as written."""
