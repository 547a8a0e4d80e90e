"""Time as the simulation keeps it: epoch seconds, days in Europe/London."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from s1mig.contract import LOCAL_TZ

LONDON = ZoneInfo(LOCAL_TZ)


@lru_cache(maxsize=4096)
def local_midnight(d: date) -> int:
    """D 00:00 Europe/London as epoch seconds."""
    return int(datetime(d.year, d.month, d.day, tzinfo=LONDON).timestamp())


def day_length(d: date) -> int:
    return local_midnight(d + timedelta(days=1)) - local_midnight(d)


def fmt_ts(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
