"""How a violation reported by a Citus shard is read (app/db.py): the same unique violation,
and the schema's constraint name, as on one PostgreSQL."""

from __future__ import annotations

import asyncpg

from app.db import unique_violation_from_shard_copy, violated_constraint

_FROM_SHARD = 'duplicate key value violates unique constraint "pk_idempotency_keys_102267"'


def test_a_shard_copys_internal_error_is_the_unique_violation() -> None:
    internal = asyncpg.InternalServerError.new(
        {"M": _FROM_SHARD, "C": "XX000", "D": "Key (program_id, key)=(11, k) already exists."}
    )
    violation = unique_violation_from_shard_copy(internal)
    assert isinstance(violation, asyncpg.UniqueViolationError)
    assert violation.sqlstate == "23505"
    assert violated_constraint(violation) == "pk_idempotency_keys"


def test_other_internal_errors_stay_what_they_are() -> None:
    other = asyncpg.InternalServerError.new(
        {"M": "could not create distributed plan", "C": "XX000"}
    )
    assert unique_violation_from_shard_copy(other) is None


def test_a_routed_violation_names_the_constraint_only_in_its_message() -> None:
    routed = asyncpg.UniqueViolationError.new(
        {
            "M": 'duplicate key value violates unique constraint "uq_tiers_program_id_key_102415"',
            "C": "23505",
        }
    )
    assert routed.constraint_name is None
    assert violated_constraint(routed) == "uq_tiers_program_id_key"


def test_one_postgresqls_violation_keeps_its_name() -> None:
    local = asyncpg.UniqueViolationError.new(
        {
            "M": 'duplicate key value violates unique constraint "uq_refunds_program_id_refund_id"',
            "C": "23505",
            "n": "uq_refunds_program_id_refund_id",
        }
    )
    assert violated_constraint(local) == "uq_refunds_program_id_refund_id"
