"""The broker connection: the MQTT session, the serve loop, the outbox and watch."""
