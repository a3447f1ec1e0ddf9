"""How a member's tier is decided (shared by events, jobs, re-evaluation and preview).

- The qualifying value is, over the policy window (or lifetime): with metric ``points``, the
  points of ``order``, ``earn`` and ``bonus`` entries less ``refund`` reversals; with metric
  ``spend``, the order amounts less what was refunded of them.
- The target tier is the highest whose threshold is at most that value.
- A higher target is granted at once. A lower one starts a grace period: the member keeps
  the tier until ``grace_days`` after first falling below it, unless the value recovers.
"""

from __future__ import annotations

# Qualifying values for the members in ``scope`` (a CTE with member_id and program_id, of
# the one program :program_id), as of :now, with the program's policy. Every tenant table is
# filtered by :program_id itself, not through a join, so that Citus sees the one shard.
QUALIFYING_CTES = """
policy AS (
    SELECT p.id AS program_id, p.tier_metric, p.tier_grace_days,
           CASE WHEN p.tier_window_days IS NULL THEN '-infinity'::timestamptz
                ELSE CAST(:now AS timestamptz) - make_interval(days => p.tier_window_days)
           END AS window_start
      FROM programs AS p
     WHERE p.id = :program_id
), earned AS (
    SELECT e.member_id, sum(e.points) AS value
      FROM point_entries AS e
      JOIN scope ON scope.program_id = e.program_id AND scope.member_id = e.member_id
      JOIN policy ON policy.program_id = scope.program_id
     WHERE e.program_id = :program_id AND policy.tier_metric = 'points'
       AND e.kind IN ('order', 'earn', 'bonus', 'refund')
       AND e.created_at > policy.window_start
     GROUP BY e.member_id
), spent AS (
    SELECT o.member_id, sum(o.amount - o.refunded_amount) AS value
      FROM orders AS o
      JOIN scope ON scope.program_id = o.program_id AND scope.member_id = o.member_id
      JOIN policy ON policy.program_id = scope.program_id
     WHERE o.program_id = :program_id AND policy.tier_metric = 'spend'
       AND o.occurred_at > policy.window_start
     GROUP BY o.member_id
), qualifying AS (
    SELECT scope.member_id, scope.program_id,
           greatest(COALESCE(earned.value, spent.value, 0), 0) AS value
      FROM scope
      LEFT JOIN earned USING (member_id)
      LEFT JOIN spent USING (member_id)
)"""

# Given ``qualifying`` and the members' accounts, decide each member's tier now, against the
# tiers in ``{tiers}`` (the tiers table, or a proposal being previewed).
DECIDE_CTES = """
, decided AS (
    SELECT q.member_id, q.program_id, q.value, a.tier_key AS current_key,
           a.tier_below_since, policy.tier_grace_days, target.key AS target_key,
           CASE
               WHEN target.key IS NOT DISTINCT FROM a.tier_key THEN 'same'
               WHEN a.tier_key IS NULL OR current_tier.threshold IS NULL
                    OR target.threshold > current_tier.threshold THEN 'up'
               ELSE 'down'
           END AS movement
      FROM qualifying AS q
      JOIN accounts AS a ON a.program_id = :program_id AND a.member_id = q.member_id
      JOIN policy ON policy.program_id = q.program_id
      LEFT JOIN {tiers} AS current_tier
             ON current_tier.program_id = :program_id AND current_tier.key = a.tier_key
      LEFT JOIN LATERAL (
          SELECT t.key, t.threshold FROM {tiers} AS t
           WHERE t.program_id = :program_id AND t.threshold <= q.value
           ORDER BY t.threshold DESC LIMIT 1
      ) AS target ON true
), settled AS (
    SELECT d.*,
           CASE
               WHEN d.movement = 'down'
                    AND COALESCE(d.tier_below_since, CAST(:now AS timestamptz))
                        + make_interval(days => d.tier_grace_days) <= :now
               THEN true ELSE false
           END AS grace_over
      FROM decided AS d
), outcome AS (
    SELECT s.*,
           CASE WHEN s.movement = 'up' OR s.grace_over THEN s.target_key
                ELSE s.current_key END AS new_key,
           CASE WHEN s.movement = 'down' AND NOT s.grace_over
                THEN COALESCE(s.tier_below_since, CAST(:now AS timestamptz)) END
               AS new_below_since
      FROM settled AS s
)"""


# A dry run over a whole program: how many members each decision would touch. Used by the
# preview (against proposed tiers) and when saving (against the saved tiers), so what the
# preview shows is what saving does.
DRY_RUN = """
WITH {proposal}scope AS (
    SELECT member_id, program_id FROM accounts WHERE program_id = :program_id
), {qualifying}{decide}
SELECT current_key, target_key, new_key, movement, grace_over,
       (tier_below_since IS NULL) AS grace_not_started, count(*) AS members
  FROM outcome
 GROUP BY 1, 2, 3, 4, 5, 6
"""

PROPOSAL_CTE = """proposed AS (
    SELECT CAST(:program_id AS bigint) AS program_id, p.key, p.threshold
      FROM jsonb_to_recordset(CAST(:proposal AS jsonb)) AS p(key text, threshold bigint)
), """


def dry_run_sql(*, proposal: bool) -> str:
    tiers = "proposed" if proposal else "tiers"
    return DRY_RUN.format(
        proposal=PROPOSAL_CTE if proposal else "",
        qualifying=QUALIFYING_CTES,
        decide=DECIDE_CTES.format(tiers=tiers),
    )
