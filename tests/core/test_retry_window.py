"""RetryPolicy: a loopback gateway gets the short retry cadence for a restart's window
only; after it, the normal backoff (from ``initial``), as a remote gateway gets."""

from __future__ import annotations

import pytest

from gwclient import RetryPolicy


def test_the_loopback_cadence_lasts_for_the_window_then_the_normal_backoff() -> None:
    policy = RetryPolicy(jitter=0.0)  # defaults: 0.2 s cadence for 30 s, backoff 0.5 s .. 30 s
    assert policy.loopback_window == 30.0 and policy.loopback_attempts == 150
    delays = [policy.after_failure(n, loopback=True, refused=True) for n in range(160)]
    assert delays[:150] == [0.2] * 150
    assert sum(delays[:150]) == pytest.approx(30.0)  # the restart window
    assert delays[150:157] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]  # then the normal backoff
    assert delays[157:] == [30.0] * 3
    # An hour of outage: about 270 attempts instead of 18 000.
    total, attempts = 0.0, 0
    while total < 3600:
        total += policy.after_failure(attempts, loopback=True, refused=True)
        attempts += 1
    assert 250 < attempts < 300


def test_gateway_starting_hints_are_followed_in_the_window_and_clamped_after() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert policy.after_failure(3, retry_after_ms=1500, loopback=True) == 0.5  # 2.5 loopback intervals
    assert policy.after_failure(150, retry_after_ms=1500, loopback=True) == 1.5  # as for a remote one
    assert policy.after_failure(150, retry_after_ms=1500) == 1.5


def test_remote_gateways_are_unchanged() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert [policy.after_failure(n, refused=True) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert [policy.after_failure(n) for n in (149, 150, 151)] == [30.0, 30.0, 30.0]


def test_the_window_is_configurable_and_validated() -> None:
    short = RetryPolicy(loopback_window=1.0, jitter=0.0)
    assert short.loopback_attempts == 5
    assert [short.after_failure(n, loopback=True, refused=True) for n in range(8)] == [
        0.2, 0.2, 0.2, 0.2, 0.2, 0.5, 1.0, 2.0]
    off = RetryPolicy(loopback_window=0.0, jitter=0.0)
    assert off.after_failure(0, loopback=True, refused=True) == 0.5
    slow = RetryPolicy(loopback_interval=60, jitter=0.0)
    assert slow.loopback_attempts == 1
    for bad in (-1.0, 3601.0):
        with pytest.raises(ValueError, match=r"^RetryPolicy\.loopback_window must be in \[0, 3600\]$"):
            RetryPolicy(loopback_window=bad)


def test_the_old_positional_and_keyword_forms_still_work() -> None:
    policy = RetryPolicy(0.1, 3.0, 9.0, 0.0, 0.3)
    assert (policy.initial, policy.multiplier, policy.maximum, policy.jitter, policy.loopback_interval) == (
        0.1, 3.0, 9.0, 0.0, 0.3)
    assert policy.after_loss(loopback=True) == pytest.approx(0.3)
    assert policy.after_loss(restart_expected_ms=2000) == 2.0
    assert RetryPolicy() == RetryPolicy(loopback_window=30.0)
