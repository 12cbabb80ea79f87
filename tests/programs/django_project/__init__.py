"""A Django project, and its one app, that tests/integrations/test_django.py runs under
django_dramatiq's ``rundramatiq`` command."""
