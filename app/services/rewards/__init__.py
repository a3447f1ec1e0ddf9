"""Rewards and coupons: spending points on something.

``catalog`` owns the reward catalog and a member's view of it (``eligible`` and ``reason``);
``redemptions`` buys a reward with points (the ``redeem`` posting, a unit of stock and a
coupon, in one transaction); ``coupons`` owns coupon codes, lookup, validation, void (the
``restore`` posting and the stock back), expiry, and what an order or a full refund does to
the coupons it names; ``codes`` makes and reads the codes. Campaign coupons (no points) are
issued through ``coupons.issue_campaign_coupon``.
"""
