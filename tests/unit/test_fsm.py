"""The fsm library: tables, legal and illegal moves, guards, observers, threads."""

import enum
import logging
import threading

import pytest

from fsm import Definition, DefinitionError, IllegalTransition, LogObserver, Transition, to_mermaid


class Light(enum.Enum):
    OFF = "Off"
    ON = "On"
    BROKEN = "Broken"


def light(**kw):
    return Definition("light", Light, Light.OFF, [
        Transition("switch_on", Light.OFF, Light.ON),
        Transition("switch_off", Light.ON, Light.OFF),
        Transition("smash", (Light.OFF, Light.ON), Light.BROKEN),
    ], final=[Light.BROKEN], **kw)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_legal_moves_follow_the_table():
    machine = light().new("kitchen")
    assert machine.state is Light.OFF
    assert machine.fire("switch_on") is Light.ON
    assert machine.fire("switch_off") is Light.OFF
    assert machine.fire("smash") is Light.BROKEN
    assert machine.is_final


def test_illegal_event_raises_and_changes_nothing():
    machine = light().new("hall")
    with pytest.raises(IllegalTransition) as caught:
        machine.fire("switch_off", reason="why not")
    assert machine.state is Light.OFF
    assert "switch_off" in str(caught.value) and "Off" in str(caught.value)
    with pytest.raises(IllegalTransition):
        machine.fire("no_such_event")
    assert machine.fire_if_allowed("switch_off") is None
    assert machine.state is Light.OFF


def test_guards_choose_among_rows():
    class S(enum.Enum):
        A = "A"
        B = "B"
        C = "C"

    definition = Definition("guarded", S, S.A, [
        Transition("go", S.A, S.B, guard=lambda ctx: ctx.get("fast", False)),
        Transition("go", S.A, S.C),
        Transition("back", (S.B, S.C), S.A, guard=lambda ctx: ctx.get("allowed", False)),
    ])
    machine = definition.new("g")
    assert not machine.can_fire("back", allowed=True)
    assert machine.fire("go", fast=True) is S.B
    with pytest.raises(IllegalTransition):
        machine.fire("back")  # guard refuses
    assert machine.state is S.B
    assert machine.fire("back", allowed=True) is S.A
    assert machine.fire("go") is S.C


@pytest.mark.parametrize("rows, final, message", [
    ([Transition("x", Light.OFF, Light.ON)], [], "unreachable"),
    ([Transition("x", Light.OFF, Light.ON), Transition("y", Light.ON, Light.BROKEN),
      Transition("z", Light.BROKEN, Light.OFF)], [Light.BROKEN], "leaves final"),
    ([Transition("x", Light.OFF, Light.ON), Transition("x", Light.OFF, Light.BROKEN)], [], "declared twice"),
])
def test_bad_tables_are_refused_when_declared(rows, final, message):
    with pytest.raises(DefinitionError, match=message):
        Definition("bad", Light, Light.OFF, rows, final=final)


def test_initial_state_must_belong_to_the_states():
    class Other(enum.Enum):
        X = 1

    with pytest.raises(DefinitionError, match="initial"):
        Definition("bad", Light, Other.X, [])


def test_observers_see_each_move_with_elapsed_time():
    clock = Clock()
    seen = []
    machine = light().new("porch", observers=[seen.append], clock=clock)
    clock.now += 2.5
    machine.fire("switch_on", reason="dusk", by="timer")
    move = seen[0]
    assert (move.kind, move.machine_id, move.source, move.target, move.event, move.reason) == (
        "light", "porch", Light.OFF, Light.ON, "switch_on", "dusk")
    assert move.elapsed == pytest.approx(2.5)
    assert move.context == {"by": "timer"}


def test_events_fired_by_an_observer_run_after_the_current_move():
    order = []
    machine = light().new("stairs")

    def observer(move):
        order.append((move.source.name, move.target.name))
        if move.target is Light.ON:
            assert machine.fire("switch_off") is None  # queued, not nested
            order.append("queued")

    machine.add_observer(observer)
    machine.fire("switch_on")
    assert order == [("OFF", "ON"), "queued", ("ON", "OFF")]
    assert machine.state is Light.OFF


def test_a_failing_observer_does_not_undo_the_move(caplog):
    def broken(move):
        raise RuntimeError("boom")

    machine = light().new("attic", observers=[broken])
    with caplog.at_level(logging.ERROR, logger="fsm"):
        machine.fire("switch_on")
    assert machine.state is Light.ON
    assert "observer" in caplog.text


def test_many_threads_firing_keep_the_machine_consistent():
    class Counter(enum.Enum):
        EVEN = "Even"
        ODD = "Odd"

    definition = Definition("parity", Counter, Counter.EVEN, [
        Transition("flip", Counter.EVEN, Counter.ODD),
        Transition("flip", Counter.ODD, Counter.EVEN),
    ])
    moves = []
    machine = definition.new("p", observers=[moves.append])
    barrier = threading.Barrier(8)

    def worker():
        barrier.wait()
        for _ in range(500):
            machine.fire("flip")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(moves) == 4000
    assert machine.state is Counter.EVEN
    # every move starts where the previous one ended: no lost or torn update
    for before, after in zip(moves, moves[1:]):
        assert after.source is before.target


def test_concurrent_competing_events_only_one_wins():
    machine = light().new("race")
    results = []
    barrier = threading.Barrier(16)

    def worker():
        barrier.wait()
        results.append(machine.fire_if_allowed("switch_on"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(Light.ON) == 1
    assert results.count(None) == 15


def test_log_observer_writes_one_structured_line(caplog):
    clock = Clock()
    machine = light().new("garage", observers=[LogObserver()], clock=clock)
    clock.now += 1.25
    with caplog.at_level(logging.INFO, logger="fsm.trace"):
        machine.fire("switch_on", reason="motion")
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.fields == {"machine": "light", "id": "garage", "from": "Off", "to": "On",
                             "event": "switch_on", "reason": "motion", "elapsed": 1.25}
    assert "light garage: Off -> On on switch_on (motion)" in record.getMessage()


def test_mermaid_rendering_lists_every_arrow():
    text = to_mermaid(light())
    assert text.startswith("stateDiagram-v2\n    [*] --> Off\n")
    assert "    Off --> On: switch_on" in text
    assert "    On --> Broken: smash" in text and "    Off --> Broken: smash" in text
    assert "    Broken --> [*]" in text
