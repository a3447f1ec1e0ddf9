"""Programs (tenants): their settings and admin keys (``programs``), API keys and their
lookup (``api_keys``), and per-key rate limits (``rate_limits``)."""
