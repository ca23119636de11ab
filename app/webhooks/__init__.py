"""Outbound webhooks: subscriptions, the outbox of deliveries written with each event, and the
dispatcher that sends them (docs/webhooks.md)."""
