"""The canary monitor kube-proxy and kubelet share: the first table polled, the others
waited for (bounded) once it is gone."""

from __future__ import annotations

from generator.node import canary


def test_only_the_first_table_is_looked_at_while_its_canary_is_there() -> None:
    asked: list[str] = []
    assert canary.flushed(lambda t: asked.append(t) is None) is False
    assert asked == ["mangle"]


def test_once_it_is_gone_the_others_are_waited_for_then_it_reports_the_flush() -> None:
    gone = {"mangle"}
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # the reload goes on: nat, then filter
        slept.append(seconds)
        gone.add("nat" if len(slept) == 1 else "filter")

    assert canary.flushed(lambda t: t not in gone, sleep=sleep) is True
    assert slept == [canary.FLUSH_POLL, canary.FLUSH_POLL] and gone == set(canary.TABLES)


def test_a_table_whose_canary_stays_is_waited_for_at_most_the_flush_timeout() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    assert canary.flushed(lambda t: t == "filter", sleep=sleep, clock=lambda: clock[0]) is True
    assert canary.FLUSH_TIMEOUT <= clock[0] < canary.FLUSH_TIMEOUT + 2 * canary.FLUSH_POLL
