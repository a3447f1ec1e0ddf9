"""Campaigns: an action (bonus points, a coupon, or a notification) aimed at a class of
members, with a random held-out group so that the shop sees what the action changed.

- ``audience``: the audience conditions as SQL over members, insights, tiers and feedback;
- ``assignment``: the deterministic treated/holdout split from (campaign id, member id);
- ``campaigns``: create, read, change, delete, and the preview that writes nothing;
- ``running``: runs in short batches (worker and on demand), each member targeted once per
  run under a unique key, the action and its event in the same transaction;
- ``results``: return rate and revenue of treated against held out, with a 95% interval;
- ``reminders``: the ``points.expiring`` and ``member.birthday_upcoming`` events.

docs/campaigns.md explains the rules and how to read the results.
"""
