"""Real ``dramatiq`` worker processes, and the frameworks that start them (Django, gevent)."""
