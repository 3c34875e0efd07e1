"""Webhook intake benchmark: signed ``POST /webhooks`` on the real app against a bare Flask route."""
