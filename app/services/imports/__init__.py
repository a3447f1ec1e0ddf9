"""Imports: moving a shop's members, opening balances and order history onto Patron.

``lines`` validates one line of an uploaded JSON Lines file; ``staging`` streams an upload
into ``import_rows`` (never whole in memory) and queues it; ``batches`` applies one batch of
staged rows of each type set-based, in a short transaction that locks the members it touches
in ascending id order; ``runner`` is the worker job that drives an import from queued to done
(resuming after a crash where the last committed batch ended) and the reads of its report.
Balances and order points are posted through the ledger's bulk posting
(app/services/ledger/imports.py); this package never writes the ledger tables itself.
docs/imports.md describes the behaviour and the decisions taken where the contract is silent.
"""
