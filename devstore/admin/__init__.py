"""The Admin GraphQL API of each pretend store: ``POST /stores/<shop>/admin/api/<version>/graphql.json``.

Documents are validated against Shopify's schema (the repository's subset), executed against the
store's rows with Shopify's shapes and user errors, and charged against the store's leaky bucket.
Register ``bp`` on the devstore app; ``devstore.state.State`` must be in ``app.extensions["devstore"]``.
"""

from devstore.admin.routes import bp

__all__ = ["bp"]
