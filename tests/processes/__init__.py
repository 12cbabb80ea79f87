"""Real ``dramatiq`` worker processes: commands of several processes, and their faults."""
