"""Which group a targeted member is in, decided from (campaign id, member id) alone, so a
rerun never moves a member between groups and nothing about the member biases the split.

The bucket is the first 32 bits of MD5("<campaign id>:<member id>") modulo 100; buckets below
``holdout_percent`` are held out. MD5 is used as a well-mixed, stable hash (the same in
PostgreSQL and Python, on every version), not for security.
"""

from __future__ import annotations

import hashlib


def holdout_bucket_sql(campaign_id: str, member_id: str) -> str:
    """The bucket (0-99) as SQL, from SQL expressions for the two ids."""
    return (
        f"(('x' || substr(md5(CAST({campaign_id} AS text) || ':' || CAST({member_id} AS text)),"
        " 1, 8))::bit(32)::bigint % 100)"
    )


def holdout_bucket(campaign_id: int, member_id: int) -> int:
    """The same bucket computed in Python (for tests and for anyone checking a split)."""
    digest = hashlib.md5(f"{campaign_id}:{member_id}".encode(), usedforsecurity=False)
    return int(digest.hexdigest()[:8], 16) % 100


def group_for(campaign_id: int, member_id: int, holdout_percent: int) -> str:
    return "holdout" if holdout_bucket(campaign_id, member_id) < holdout_percent else "treated"
