"""Who crossed the doorway, and which way: two break-beams read as a small state machine.

Beam A is on the outside of the doorway, beam B on the inside. The machine keeps the
people between the beams in order, each with the side they came from, and decides at
each edge whether someone finished a crossing:

- a person who came in over A and leaves the doorway on B's side is an **entry**; B to A
  is an **exit**; one who leaves on the side they came from **turned back** (a crossing
  begun and abandoned);
- someone lingering between the beams keeps everything open until they move on;
- **two people one right behind the other**: when A breaks again while the first person
  is only on B, that is a second person; when B then clears with A still broken, the
  first one has gone through;
- **both beams broken at once** (a wide object, someone sideways): the side is unknown
  until they leave, and the side they leave on decides; if they leave both beams at once
  too, the crossing is reported as **ambiguous** and counted as neither;
- a short flicker on one beam (and lgpio's debounce, which swallows pulses shorter than
  its bounce time) can only ever read as turning back, never as a count.

Beam states alone cannot tell a tailgater who catches up with the first person on B
from a first person stepping back onto A; the machine counts that rare case as one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENTRY, EXIT, TURNED_BACK, AMBIGUOUS = "entry", "exit", "turned_back", "ambiguous"
SIMULTANEOUS = 0.003  # seconds: no one walks 10 cm between beams faster than this


def _other(beam: str) -> str:
    return "b" if beam == "a" else "a"


def _crossing(origin: str, leaves_on: str) -> str:
    if origin == leaves_on:
        return TURNED_BACK
    return ENTRY if leaves_on == "b" else EXIT


@dataclass
class Doorway:
    broken: dict[str, bool] = field(default_factory=lambda: {"a": False, "b": False})
    people: list[str] = field(default_factory=list)  # origin of each person, first in first
    last_edge: dict[str, float] = field(default_factory=lambda: {"a": -1.0, "b": -1.0})

    def edge(self, beam: str, broken: bool, at: float) -> list[str]:
        """Feed one edge of `beam` ("a" or "b"); returns what it completed, if anything."""
        if self.broken[beam] == broken:
            return []  # no change (an edge swallowed by debouncing, seen from the other end)
        other = _other(beam)
        previous = self.last_edge
        simultaneous = at - previous[other] < SIMULTANEOUS
        self.broken[beam] = broken
        self.last_edge = {**previous, beam: at}
        if broken:
            return self._broke(beam, other, simultaneous)
        return self._cleared(beam, other, simultaneous)

    def _broke(self, beam: str, other: str, simultaneous: bool) -> list[str]:
        if not self.broken[other]:
            self.people = [beam]  # someone steps into an empty doorway
        elif not self.people:
            self.people = ["?"]
        elif simultaneous and len(self.people) == 1:
            self.people = ["?"]  # both beams at once: which way is not known yet
        elif self.people[-1] == beam:
            self.people.append(beam)  # the last one is through this beam: someone new
        return []

    def _cleared(self, beam: str, other: str, simultaneous: bool) -> list[str]:
        if self.broken[other]:
            # Off this beam, still on the other. With someone else behind, the first
            # person, coming from the other side, has just left over this beam.
            if len(self.people) >= 2 and self.people[0] == other:
                return [_crossing(self.people.pop(0), beam)]
            return []
        # The doorway is empty again: the first person leaves on this beam's side.
        people, self.people = self.people, []
        if not people:
            return []
        first, rest = people[0], people[1:]
        if first == "?":
            outcome = AMBIGUOUS if simultaneous else _crossing(other, beam)
        else:
            outcome = _crossing(first, beam)
        return [outcome] + [TURNED_BACK] * len(rest)
