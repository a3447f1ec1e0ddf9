"""The ledger: the only code that writes ``accounts``, ``point_entries`` and ``point_lots``.

Other services move points by composing the postings offered here (``postings``: credit,
debit with lot consumption, reserve and settle a hold, order and refund postings, account
locks and opening) and never spell those INSERTs or UPDATEs themselves; a test fails when any
other file in ``app/`` does. Also here: the jobs that change balances by themselves (pending
release in ``pending``, lot expiry in ``expiry``) and the invariants that ``patron audit``
checks (``audit``).
"""

from app.services.ledger.balances import get_points, list_transactions
from app.services.ledger.postings import Posting, credit, debit

__all__ = ["Posting", "credit", "debit", "get_points", "list_transactions"]
