"""How often a six-field NCRONTAB schedule fires, so the watchdog knows what "late" is.

`{second} {minute} {hour} {day} {month} {day-of-week}` in UTC, as the Functions timer
reads it. The period is the longest gap between two firings over the coming year
(for `0 0 */6 * * *` six hours, for weekdays at 06:00 the weekend's 72 hours): a scan is
stale only when even the longest gap has passed twice.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from shared.errors import UsageError

_MONTHS = [
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (low, high, names) for minute, hour, day, month, day-of-week; seconds only need to
# match something, as the period is measured in minutes.
_FIELDS = (
    (0, 59, None),
    (0, 23, None),
    (1, 31, None),
    (1, 12, _MONTHS),
    (0, 7, _DAYS),  # 0 and 7 are both Sunday
)
_HORIZON_DAYS = 400


def schedule_period(expression: str, setting_name: str = "SCAN_SCHEDULE") -> timedelta:
    """The longest gap between two firings of `expression`."""
    parts = expression.split()
    if len(parts) != 6:
        raise UsageError(
            "%s=%r is not a six-field NCRONTAB expression ({second} {minute} {hour} "
            "{day} {month} {day-of-week}); for every six hours use '0 0 */6 * * *'"
            % (setting_name, expression)
        )
    where = "%s=%r" % (setting_name, expression)
    _values(parts[0], (0, 59, None), where)
    minutes, hours, days, months, weekdays = (
        _values(text, field, where)
        for text, field in zip(parts[1:], _FIELDS, strict=True)
    )
    weekdays = {d % 7 for d in weekdays}
    if parts[3] != "*" and parts[5] != "*":
        raise UsageError(
            "%s=%r restricts both day of month and day of week; the watchdog cannot "
            "tell its period, so restrict only one of them" % (setting_name, expression)
        )
    fires = _firings(minutes, hours, days, months, weekdays)
    if len(fires) < 2:
        raise UsageError(
            "%s=%r fires less than twice a year; schedule scans at least monthly"
            % (setting_name, expression)
        )
    return max(b - a for a, b in itertools.pairwise(fires))


def _firings(
    minutes: set[int],
    hours: set[int],
    days: set[int],
    months: set[int],
    weekdays: set[int],
) -> list[datetime]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    times = sorted(h * 60 + m for h in hours for m in minutes)
    fires: list[datetime] = []
    for offset in range(_HORIZON_DAYS):
        day = start + timedelta(days=offset)
        iso_weekday = day.isoweekday() % 7  # Sunday is 0, as cron counts
        if day.day in days and day.month in months and iso_weekday in weekdays:
            fires.extend(day + timedelta(minutes=t) for t in times)
    return fires


def _values(
    text: str, field: tuple[int, int, list[str] | None], where: str
) -> set[int]:
    low, high, names = field
    values: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                first, last = low, high
            elif "-" in body:
                a, b = body.split("-", 1)
                first, last = _number(a, names), _number(b, names)
            else:
                first = _number(body, names)
                last = high if step_text else first
        except ValueError:
            first, last, step = 1, 0, 0
        if step < 1 or not low <= first <= last <= high:
            raise UsageError(
                "%s has a field %r that is not a number, range or step within %d-%d"
                % (where, text, low, high)
            )
        values.update(range(first, last + 1, step))
    return values


def _number(text: str, names: list[str] | None) -> int:
    if names is not None and text.lower() in names:
        return names.index(text.lower()) + (1 if names is _MONTHS else 0)
    return int(text)
