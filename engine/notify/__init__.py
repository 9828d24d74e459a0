"""Outbound notifications: signed webhooks to case-management systems and opt-in warnings
to the protected devices themselves (docs/notifications.md).

A room of its own because it is neither the broker connection (engine/mqtt: it only hands
warnings to the engine's session to publish), nor the store (engine/store/notify: it only
reads the alert log and keeps its own positions), nor the console (engine/console: people
reach that; this reaches out to other systems). It follows the alert log after the engine
has committed, on its own connection and tasks, so a receiver that is down or slow never
slows a decision; nothing in the decision path imports it."""
