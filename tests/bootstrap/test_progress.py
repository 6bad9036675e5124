"""Progress lines: printed when the status changes, and otherwise only now and then."""

from __future__ import annotations

import io

from squall.bootstrap.progress import LinePrinter, Update, countdown


def test_countdown() -> None:
    assert [countdown(s) for s in (0, 59.6, 105, 600, -3)] == [
        "0:00",
        "1:00",
        "1:45",
        "10:00",
        "0:00",
    ]


def test_prints_changes_and_throttles_countdowns() -> None:
    now = [0.0]
    out = io.StringIO()
    show = LinePrinter(out, every=15, clock=lambda: now[0])
    for t, status, left in [
        (0, "waiting for SSH (port closed)", 120),
        (5, "waiting for SSH (port closed)", 115),  # same status, too soon: quiet
        (16, "waiting for SSH (port closed)", 104),
        (18, "waiting for SSH (no answer)", 102),
        (19, "connected", None),
    ]:
        now[0] = t
        show(Update("controller-0 10.0.1.5", status, left))
    assert out.getvalue().splitlines() == [
        "controller-0 10.0.1.5: waiting for SSH (port closed) 2:00 left",
        "controller-0 10.0.1.5: waiting for SSH (port closed) 1:44 left",
        "controller-0 10.0.1.5: waiting for SSH (no answer) 1:42 left",
        "controller-0 10.0.1.5: connected",
    ]
