"""Rewards and coupons: spending points on something.

``catalog`` owns the reward catalog and a member's view of it (``eligible`` and ``reason``);
``redemptions`` buys a reward with points (the ``redeem`` posting, a unit of stock and a
coupon, in one transaction); ``coupons`` issues coupons and owns lookup, validation and void
(the ``restore`` posting and the stock back); ``coupon_orders`` is what an order naming
coupons and a full refund of it do to them; ``coupon_expiry`` is the worker job;
``codes`` makes and reads the codes. Campaign coupons (no points) are issued through
``coupons.issue_campaign_coupon``.
"""
