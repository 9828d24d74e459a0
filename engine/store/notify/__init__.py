"""The store's side of outbound notifications (engine/notify/): the alert log read on a
read-only connection of their own, and the tables only they write (webhook cursors, the
warnings sent to protected devices), in the same SQLite file on a second connection."""
