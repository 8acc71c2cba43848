"""The ids a database row can have: a signed 64-bit column, from 1. Serializers refuse anything else, and
lookups check first, because SQLite raises OverflowError on a larger number. (Its own module: the API
module is loaded by DRF's settings, and the apps' permissions must not import it while that happens.)"""

from __future__ import annotations

ID_MAX = 2**63 - 1


def is_row_id(pk: int) -> bool:
    """Whether a row could have this id."""
    return 0 < pk <= ID_MAX
