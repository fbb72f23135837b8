from __future__ import annotations

from datetime import timedelta

import pytest

from shared.alerts.schedule import schedule_period
from shared.errors import UsageError


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("0 0 */6 * * *", timedelta(hours=6)),
        ("0 */5 * * * *", timedelta(minutes=5)),
        ("0 0 6,18 * * *", timedelta(hours=12)),
        ("0 0 6 * * 1-5", timedelta(days=3)),
        ("0 0 6 * * MON-FRI", timedelta(days=3)),
        ("0 30 2 * * 0", timedelta(days=7)),
        ("0 30 2 * * 7", timedelta(days=7)),
    ],
)
def test_period_is_the_longest_gap_between_firings(
    expression: str, period: timedelta
) -> None:
    assert schedule_period(expression) == period


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 */6 * * *", "six-field"),
        ("0 0 25 * * *", "within 0-23"),
        ("0 0 */0 * * *", "within 0-23"),
        ("0 0 6 1 * 1", "both day of month and day of week"),
    ],
)
def test_bad_schedule_is_a_usage_error_naming_it(expression: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        schedule_period(expression)

    assert "SCAN_SCHEDULE=" in str(error.value)
