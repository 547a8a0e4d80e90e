"""Time: instants are UTC datetimes; days are Europe/London local days."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from s1mig.contract import LOCAL_TZ

LONDON = ZoneInfo(LOCAL_TZ)


def day_start(d: date) -> datetime:
    """D 00:00 Europe/London, as a UTC instant."""
    return datetime.combine(d, time(0), tzinfo=LONDON).astimezone(UTC)


def end_of(d: date) -> datetime:
    """'End of D' = (D+1) 00:00 Europe/London, as a UTC instant."""
    return day_start(d + timedelta(days=1))


def in_day(t: datetime, d: date) -> bool:
    return day_start(d) <= t < end_of(d)


def local_day(t: datetime) -> date:
    return t.astimezone(LONDON).date()


def parse_ts(text: str) -> datetime:
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {text!r}")
    return t.astimezone(UTC)
