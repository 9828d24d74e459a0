"""Casework: the human side of alerts in the store — monitors' actions on an alert
(acknowledge, note, assign, resolve, reopen) and the reads the console makes (an alert's
history, its fixes, the protected device's positions, the alert log after a point).

A room of its own inside engine/store because it is neither the engine's commit path nor
the ledger's rules: it writes through the store's own commit (so an action is a ledger row
and an alert record like any other) and reads on connections of its own."""
