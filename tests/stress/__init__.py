"""Stress runs: thousands of messages, a random subset aborted at random moments."""
