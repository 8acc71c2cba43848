"""Number formatting on the pages: a threshold never reads as more than it is."""

from __future__ import annotations

from projects.templatetags.lightbulb import percent, percent_floor, percent_value


def test_thresholds_round_down_so_they_never_read_as_certainty():
    assert percent(0.99996, 2) == "100.00%"  # what the card used to show for a threshold below 1
    assert percent_floor(0.99996) == "99.99%"
    assert percent_floor(1.0) == "100.00%"  # a threshold of exactly 1 (saturated probabilities) is 100%
    assert percent_floor(0.95) == "95.00%" and percent_floor(0.29) == "29.00%"  # no float fuzz below
    assert percent_floor(0.93219, 1) == "93.2%" and percent_floor(None) == "—"


def test_the_target_input_gets_a_plain_number():
    assert percent_value(0.95) == "95" and percent_value(0.975) == "97.5" and percent_value(None) == ""
