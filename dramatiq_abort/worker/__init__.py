"""What runs inside a worker process and is not public: the watcher that
receives abort events, the table of running executions, the interrupters
that stop them, and the requests and rules in force.

Nothing here is a public name; :class:`dramatiq_abort.Abortable` builds
and drives these parts.
"""
