"""The rollout progress bar has a segment for every device state the engine counts."""

from __future__ import annotations

from csi_ota.controller.webui.rollout_pages import BAR_STATES, bar_segments


def test_not_reached_devices_get_their_own_segment():
    segments = bar_segments({"succeeded": 8, "not_reached": 2}, members=10)
    assert [(s["state"], s["count"], s["width"]) for s in segments] == [
        ("succeeded", 8, 80.0),
        ("not_reached", 2, 20.0),
    ]


def test_segments_cover_the_members_of_every_state():
    counts = {state: 1 for state in BAR_STATES}
    segments = bar_segments(counts, members=len(BAR_STATES))
    assert [s["state"] for s in segments] == list(BAR_STATES)
    assert abs(sum(s["width"] for s in segments) - 100.0) < 0.001 * len(
        segments
    )  # widths are rounded to 3 places
