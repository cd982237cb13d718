"""The platform's stop sequence: hooks in order, bounded, forced by a second signal."""

import threading

import pytest

from operations.runtime import Platform, PlatformError, PlatformOptions


def record_startup(platform: Platform) -> None:
    """Referenced by dotted path from settings in a test."""


def record_shutdown(platform: Platform) -> None:
    """Referenced by dotted path from settings in a test."""


def never_stop(platform: Platform) -> str:
    return ""


class FakePart:
    """A part that is running until told otherwise."""

    def __init__(self, name: str, log: list[str], *, alive: bool = True, stops: bool = True):
        self.name, self.log, self.alive, self.stops = name, log, alive, stops

    def start(self) -> str:
        return "fake"

    def stop(self, timeout: float) -> bool:
        self.log.append(f"stop {self.name}")
        self.alive = not self.stops
        return self.stops

    def is_alive(self) -> bool:
        return self.alive


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def make_platform(lines):
    def make(**options) -> Platform:
        return Platform(PlatformOptions(**options), out=lines.append)

    return make


def test_hooks_and_stop_checks_are_read_from_settings(settings, make_platform):
    settings.PLATFORM_STARTUP_HOOKS = ["operations.tests.test_runtime.record_startup"]
    settings.PLATFORM_SHUTDOWN_HOOKS = ["operations.tests.test_runtime.record_shutdown"]
    settings.PLATFORM_STOP_CHECKS = ["operations.tests.test_runtime.never_stop"]
    platform = make_platform()
    assert platform.startup_hooks == [record_startup]
    assert platform.shutdown_hooks == [record_shutdown]
    assert platform.stop_checks == [never_stop]


def test_shutdown_hooks_run_in_order_before_the_parts_stop(make_platform, lines):
    platform = make_platform()
    log: list[str] = []
    platform.shutdown_hooks = [lambda p: log.append("halt entries"),
                               lambda p: log.append("cancel orders"),
                               lambda p: log.append("write snapshot")]
    platform.worker = FakePart("worker", log)
    platform.beat = FakePart("beat", log)
    platform.web = FakePart("web", log)
    platform.request_stop("SIGTERM")
    assert platform.stop() == 0
    assert log == ["halt entries", "cancel orders", "write snapshot",
                   "stop beat", "stop web", "stop worker"]
    assert lines[0] == "stopping (SIGTERM) ..."
    assert lines[-4:] == ["  beat: stopped", "  web: stopped", "  worker: stopped", "stopped cleanly"]


def test_a_failing_hook_is_reported_and_the_next_ones_still_run(make_platform, lines):
    platform = make_platform()
    ran: list[str] = []

    def cancel_orders(p: Platform) -> None:
        raise ConnectionError("exchange unreachable")

    platform.shutdown_hooks = [cancel_orders, lambda p: ran.append("snapshot")]
    assert platform.stop() == 1
    assert ran == ["snapshot"]
    assert any("cancel_orders failed: ConnectionError('exchange unreachable')" in line
               for line in lines)
    assert lines[-1] == "stopped with exit code 1"


def test_hooks_past_the_shutdown_timeout_are_abandoned(make_platform, lines):
    platform = make_platform(shutdown_timeout=0.2)
    release = threading.Event()

    def hanging_exchange_call(p: Platform) -> None:
        release.wait(10)

    platform.shutdown_hooks = [hanging_exchange_call]
    try:
        assert platform.stop() == 1
    finally:
        release.set()
    assert platform.seconds_left() == 0
    assert any(line.startswith("  shutdown hooks abandoned (past shutdownTimeoutSeconds=0.2): ")
               and "hanging_exchange_call" in line for line in lines)


def test_a_second_signal_forces_the_stop(make_platform, lines):
    platform = make_platform(shutdown_timeout=60)
    release = threading.Event()

    def slow_close(p: Platform) -> None:
        p.request_stop("SIGINT")  # the operator presses Ctrl+C again
        release.wait(10)

    platform.shutdown_hooks = [slow_close]
    platform.request_stop("SIGTERM")
    try:
        assert platform.stop() == 1
    finally:
        release.set()
    assert platform.force_requested.is_set()
    assert platform.stop_reason == "SIGTERM"
    assert "  SIGINT again: forcing the stop" in lines
    assert any(line.startswith("  shutdown hooks abandoned (forced): ") for line in lines)


def test_a_part_that_does_not_stop_in_time_makes_the_exit_code_1(make_platform, lines):
    platform = make_platform()
    platform.worker = FakePart("worker", [], stops=False)
    assert platform.stop() == 1
    assert "  worker: still running after 10 s, abandoned" in lines


def test_a_part_ending_on_its_own_stops_the_platform(make_platform):
    platform = make_platform()
    platform.beat = FakePart("beat", [], alive=False)
    platform.wait()
    assert platform.stop_reason == "beat stopped unexpectedly"
    assert platform.exit_code == 1


def test_a_failing_startup_hook_stops_the_start(make_platform):
    platform = make_platform(port=0)

    def reconcile(p: Platform) -> None:
        raise RuntimeError("snapshot unreadable")

    platform.startup_hooks = [reconcile]
    with pytest.raises(PlatformError, match="reconcile failed: RuntimeError"):
        platform.start()
    assert platform.parts() == []


def test_a_stop_check_answering_a_reason_stops_the_platform(make_platform):
    platform = make_platform()
    answers = iter(["", "", "shutdown requested by shutdown_platform"])
    platform.stop_checks = [lambda p: next(answers)]
    platform.wait()
    assert platform.stop_reason == "shutdown requested by shutdown_platform"
    assert platform.stop() == 0


def test_a_failing_stop_check_does_not_stop_the_platform(make_platform):
    platform = make_platform()
    calls: list[int] = []

    def flaky(p: Platform) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database restarting")
        return "operator asked"

    platform.stop_checks = [flaky]
    platform.wait()
    assert len(calls) == 2
    assert platform.stop_reason == "operator asked"
