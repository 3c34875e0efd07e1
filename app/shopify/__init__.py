"""The Shopify platform: verification, OAuth, tokens and the Admin GraphQL client.

Nothing in here knows about programs, codes or referrals.
"""
