"""The frameworks a worker runs in: Django projects through django_dramatiq, and gevent."""
