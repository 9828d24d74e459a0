"""Intake: what happens to a record before any decision. Admission (time and rate limits),
duplicate seq detection, and event-time ordering with seq gaps held; each a numba kernel
over plain arrays behind a thin class."""
