"""Reconciliation benchmark: metrics queries and orders reconciled per second as a shop's codes grow."""
