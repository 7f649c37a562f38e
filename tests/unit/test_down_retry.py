"""`kgen down` when the engine is too busy to kill a container in time (250 nodes at
load 400: "tried to kill container, but did not receive an exit event")."""

from __future__ import annotations

import docker.errors
import pytest

from generator.runtime.down import REMOVE_TRIES, remove_container, remove_containers
from generator.runtime.errors import RuntimeFailure


class Busy:
    """A container whose engine misses the kill's exit event `misses` times."""

    def __init__(self, misses: int) -> None:
        self.misses, self.calls = misses, 0

    def remove(self, force: bool) -> None:
        assert force
        self.calls += 1
        if self.calls <= self.misses:
            raise docker.errors.APIError(
                "500 Server Error", explanation="tried to kill container, but did not "
                                                "receive an exit event")


class Gone:
    def remove(self, force: bool) -> None:
        raise docker.errors.NotFound("no such container")


def test_a_missed_exit_event_is_tried_again() -> None:
    busy = Busy(misses=REMOVE_TRIES - 1)
    assert remove_container(busy) is None and busy.calls == REMOVE_TRIES


def test_an_engine_that_keeps_missing_it_is_reported_after_a_bounded_number_of_tries() -> None:
    busy = Busy(misses=REMOVE_TRIES + 5)
    said = remove_container(busy)
    assert busy.calls == REMOVE_TRIES
    assert said == "tried to kill container, but did not receive an exit event"


def test_a_container_gone_meanwhile_is_what_down_wants() -> None:
    assert remove_container(Gone()) is None


def test_what_is_left_is_named_in_one_line_once_every_other_container_is_gone() -> None:
    stuck, fine = Busy(misses=REMOVE_TRIES + 5), Busy(misses=0)
    with pytest.raises(RuntimeFailure) as err:
        remove_containers([stuck, fine], "big", " on ssh://h2")
    assert fine.calls == 1 and stuck.calls == REMOVE_TRIES
    assert str(err.value) == ("1 of 2 containers of lab big on ssh://h2 could not be removed "
                              "(the engine said: tried to kill container, but did not receive "
                              "an exit event); run kgen down again")
