"""Kept for ``treadle/cron``'s import of :func:`encode_data`, which now lives in ``_state``.

Remove once ``cron/_cron.py`` imports it from ``treadle._state``.
"""

from ._state import encode_data

__all__ = ["encode_data"]
