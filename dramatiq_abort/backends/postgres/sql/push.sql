-- A batch of inquiries only: pushed, never recorded.
SELECT pg_notify(%(channel)s, fragment) FROM unnest(%(fragments)s::text[]) AS f(fragment)
