"""Referral benchmark: the friend landing against a bare Flask route, and Admin API points per friend code."""
