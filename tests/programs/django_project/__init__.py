"""A Django project, and its one app, that tests/processes/test_django.py runs under
django_dramatiq's ``rundramatiq`` command."""
