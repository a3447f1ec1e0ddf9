"""VIP tiers: the tier catalog and policy (``tiers``), the rules that decide a member's tier
(``tier_rules``) and applying them after events, in jobs and after admin changes
(``tier_evaluation``)."""
