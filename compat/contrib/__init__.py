"""``celery.contrib``."""
