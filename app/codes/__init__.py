"""The domain: codes, issuance, reconciliation and metrics. No Flask, no HTTP."""
