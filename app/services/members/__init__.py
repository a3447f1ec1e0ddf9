"""Members: profiles and erasure (``members``), member tokens for mobile apps
(``member_tokens``), and the per-member batching that the worker's jobs share
(``member_batches``)."""
