"""The Celery-compatible compat layer: Celery code run by dramatiq workers."""
