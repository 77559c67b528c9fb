"""Notifications: a per-user topic, a bell with the unread count, delivery confirmed by ACKs."""
