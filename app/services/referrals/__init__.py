"""Referrals: share codes and links, attribution at sign-up, fraud checks, and the payout to
both members once the referee's first order is final (``referrals``)."""
