"""Exports: members, the ledger and orders streamed out as CSV or JSON Lines.

``exports`` runs each export as one server-side cursor in a read-only transaction and turns
each fetched block of rows into bytes before fetching the next, so memory stays constant
whatever the size; ``cells`` writes CSV that spreadsheet programs cannot mistake for
formulas. docs/imports.md shows the columns and the exact quoting rule.
"""
