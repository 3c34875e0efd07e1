"""The customer's own page in the storefront, served through Shopify's app proxy (routes only)."""
