"""The delivery email: an outbox row per email (`repository`), queued by `service` inside the
caller's transaction, sent once by `tasks`; the SMTP and mail-dir transports are
`bitloot.mail`.

The email carries a link to the key page (with the order token in the URL fragment), never a
key.
"""
