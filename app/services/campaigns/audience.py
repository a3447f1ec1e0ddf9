"""An audience (schemas/campaigns.py ``Audience``) as SQL over ``members AS m``.

Conditions combine with AND, the values of one list with OR. Segments, lifecycle stages and
the last order come from ``member_insights`` as of the program's last insights refresh (at
most an hour old, see docs/insights.md), the tier from the member's account, the NPS class
from the member's latest feedback score, and days are counted in the program's time zone.
Erased members never match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

# NPS classes by the latest feedback score (api.md: promoters 9-10, detractors 0-6).
_NPS_CLASS = (
    "CASE WHEN latest_feedback.score >= 9 THEN 'promoter' "
    "WHEN latest_feedback.score >= 7 THEN 'passive' ELSE 'detractor' END"
)
# The latest score: looked up member by member when a batch of members is read (a run), or
# for the whole program in one pass when every member is (a preview counts them all).
_LATEST_FEEDBACK_PER_MEMBER = """CROSS JOIN LATERAL (
    SELECT f.score FROM member_feedback AS f
     WHERE f.program_id = :program_id AND f.member_id = m.id
     ORDER BY f.created_at DESC, f.id DESC
     LIMIT 1) AS latest_feedback"""
_LATEST_FEEDBACK_OF_PROGRAM = """JOIN (
    SELECT DISTINCT ON (f.member_id) f.member_id, f.score FROM member_feedback AS f
     WHERE f.program_id = :program_id
     ORDER BY f.member_id, f.created_at DESC, f.id DESC) AS latest_feedback
  ON latest_feedback.member_id = m.id"""


def _birthday_in_year(year: str) -> str:
    # date + interval 'n years' maps 29 February to 28 February in other years.
    return (
        "CAST(m.birthday + make_interval(years => "
        f"CAST({year} - extract(year FROM m.birthday) AS integer)) AS date)"
    )


_THIS_YEAR = "CAST(:this_year AS integer)"
# Days from :today to the member's next birthday (0 when it is today).
DAYS_TO_BIRTHDAY = (
    f"(CASE WHEN {_birthday_in_year(_THIS_YEAR)} >= CAST(:today AS date) "
    f"THEN {_birthday_in_year(_THIS_YEAR)} "
    f"ELSE {_birthday_in_year(_THIS_YEAR + ' + 1')} END - CAST(:today AS date))"
)


@dataclass
class AudienceSql:
    """``FROM members AS m {joins} WHERE {where}`` selects the audience with ``params``."""

    joins: str
    where: str
    params: dict[str, Any] = field(default_factory=dict)


def audience_sql(
    audience: dict[str, Any],
    program_id: int,
    today: date,
    timezone: str,
    *,
    whole_program: bool = False,
) -> AudienceSql:
    """The SQL of an audience for a program whose local date is ``today``; with
    ``whole_program`` the joins suit reading every member at once rather than a batch."""
    joins: list[str] = []
    where = ["m.program_id = :program_id", "m.erased_at IS NULL"]
    params: dict[str, Any] = {"program_id": program_id}

    needs_insights = any(
        audience.get(key) is not None
        for key in (
            "segments",
            "lifecycles",
            "min_days_since_last_order",
            "max_days_since_last_order",
        )
    )
    if needs_insights:
        joins.append(
            "JOIN member_insights AS mi ON mi.member_id = m.id AND mi.program_id = m.program_id"
        )
    if audience.get("segments") is not None:
        where.append("mi.segment = ANY(CAST(:segments AS text[]))")
        params["segments"] = list(audience["segments"])
    if audience.get("lifecycles") is not None:
        where.append("mi.lifecycle = ANY(CAST(:lifecycles AS text[]))")
        params["lifecycles"] = list(audience["lifecycles"])
    low = audience.get("min_days_since_last_order")
    high = audience.get("max_days_since_last_order")
    if low is not None or high is not None:
        days = "(CAST(:today AS date) - CAST(mi.last_order_at AT TIME ZONE :timezone AS date))"
        where.append("mi.last_order_at IS NOT NULL")
        params["today"] = today
        params["timezone"] = timezone
        if low is not None:
            where.append(f"{days} >= :min_days")
            params["min_days"] = low
        if high is not None:
            where.append(f"{days} <= :max_days")
            params["max_days"] = high
    if audience.get("tiers") is not None:
        joins.append("JOIN accounts AS a ON a.member_id = m.id AND a.program_id = m.program_id")
        where.append("a.tier_key = ANY(CAST(:tiers AS text[]))")
        params["tiers"] = list(audience["tiers"])
    if audience.get("nps_classes") is not None:
        joins.append(_LATEST_FEEDBACK_OF_PROGRAM if whole_program else _LATEST_FEEDBACK_PER_MEMBER)
        where.append(f"{_NPS_CLASS} = ANY(CAST(:nps_classes AS text[]))")
        params["nps_classes"] = list(audience["nps_classes"])
    if audience.get("birthday_within_days") is not None:
        where.append("m.birthday IS NOT NULL")
        where.append(f"{DAYS_TO_BIRTHDAY} <= :birthday_days")
        params["today"] = today
        params["this_year"] = today.year
        params["birthday_days"] = audience["birthday_within_days"]
    for index, (key, wanted) in enumerate(sorted((audience.get("metadata") or {}).items())):
        values = wanted if isinstance(wanted, list) else [wanted]
        # A JSON array contains [x] exactly when one of its elements equals x (types and
        # all: "1" is not 1); a missing key gives [null], which no list of values holds.
        where.append(
            f"CAST(:metadata_values_{index} AS jsonb) "
            f"@> jsonb_build_array(m.metadata -> CAST(:metadata_key_{index} AS text))"
        )
        params[f"metadata_key_{index}"] = key
        params[f"metadata_values_{index}"] = orjson.dumps(values).decode()
    return AudienceSql(joins="\n".join(joins), where=" AND ".join(where), params=params)
