"""Interval reports over the recorder's tables (docs/reports.md): `acd report` and the API's
/api/v1/reports/.

``intervals`` puts intervals on a time zone's clock, ``request`` checks what a user asks
for, ``queries`` reads the rows, ``figures`` and ``report`` add them up (pure, router/kpi.py's
formulas), ``render`` writes CSV, JSON or a table, ``service`` ties them to a pool, ``cli``
is the command.
"""
