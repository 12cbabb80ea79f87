-- What is recorded of one message and still valid: its abort and cancel
-- events, its outcome and its state.
SELECT
    (SELECT params FROM {events} WHERE key = %(abort)s AND expires_at > now()),
    (SELECT params FROM {events} WHERE key = %(cancel)s AND expires_at > now()),
    (SELECT outcome FROM {outcomes} WHERE message_id = %(message_id)s AND expires_at > now()),
    (SELECT state FROM {states} WHERE message_id = %(message_id)s AND expires_at > now())
