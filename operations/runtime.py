"""The embedded platform: ASGI server, Celery worker and beat in one process.

``python manage.py runplatform`` builds a :class:`Platform` and calls :meth:`Platform.run`.
Nothing external is needed: with ``REDIS_URL`` unset the worker and beat talk over
Celery's in-memory broker, and the dashboard's channel layer is in memory too. With
``REDIS_URL`` set the same command runs on Redis (the Procfile's separate ``web``,
``worker`` and ``beat`` processes are the scale-out form of the same three parts).

Lifecycle
---------
``start()``
    1. startup hooks (``settings.PLATFORM_STARTUP_HOOKS``), e.g. recovery/reconciliation;
    2. the Celery worker (thread pool), then a task round trip through it (self-check);
    3. beat with django-celery-beat's ``DatabaseScheduler`` (editable in the admin);
    4. the services of a trading process (``settings.PLATFORM_SERVICES``: the account
       streams and the deadline scheduler), unless the instance is web-only;
    5. the daphne ASGI server (HTTP, ``/ws/health/``, static files through whitenoise).
    The web server comes last, so an answering ``/admin/`` means everything is up;
    then ``platform_started`` (``tradingsite.signals``) is sent.
``wait()``
    Blocks until a stop is requested (SIGINT/SIGTERM, :meth:`Platform.request_stop`),
    a stop check asks for one, or a part stops on its own (exit code 1). Stop checks
    (``settings.PLATFORM_STOP_CHECKS``, ``def check(platform) -> str``) are polled twice
    a second; a non-empty answer is the stop reason (e.g. "shutdown requested by
    shutdown_platform", read from the database).
``stop()``
    1. shutdown hooks (``settings.PLATFORM_SHUTDOWN_HOOKS``) in order, together bounded
       by ``liveTrading.shutdown.shutdownTimeoutSeconds``; then ``platform_stopping``
       (``tradingsite.signals``) while the worker still runs — the notifications app
       sends "stopping" and stops the embedded watchdog there;
    2. beat (no new periodic work), the web server (no new requests), the worker
       (finishes the tasks it holds);
    3. returns the exit code: 0 when everything finished in time, else 1.

Plugging in (graceful shutdown and recovery)
--------------------------------------------
A hook is a dotted path to ``def hook(platform: Platform) -> None``, listed in
``PLATFORM_STARTUP_HOOKS`` or ``PLATFORM_SHUTDOWN_HOOKS``; hooks can also be appended to
``platform.startup_hooks`` / ``platform.shutdown_hooks`` before ``run()``. Shutdown hooks
run on their own thread while the worker and web server are still up, so a hook can
halt entries, cancel orders through the worker and write a snapshot. A hook may read
``platform.stop_reason``, ``platform.seconds_left()`` and ``platform.force_requested``
(set by a second signal). When the deadline passes or a second signal arrives, the
unfinished hooks are abandoned (named in the output), the parts are stopped at once
and the exit code is 1. A hook that raises is reported and also makes the exit code 1;
the next hooks still run.

The daphne reactor is process-global: one ``Platform`` runs per process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from django.conf import settings
from django.db import connections
from django.utils.module_loading import import_string

from tradingsite.signals import platform_started, platform_stopping

Hook = Callable[["Platform"], None]
StopCheck = Callable[["Platform"], str]
Output = Callable[[str], None]

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
FORCED_STOP_TIMEOUT_SECONDS = 1.0
PING_TIMEOUT_SECONDS = 15.0
WAIT_POLL_SECONDS = 0.5

log = logging.getLogger(__name__)


class PlatformError(RuntimeError):
    """A part of the platform could not start."""


@dataclass(frozen=True)
class PlatformOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    worker_threads: int = 4
    run_worker: bool = True
    run_beat: bool = True
    access_log: bool = False
    shutdown_timeout: float = 60.0
    beat_max_interval: float = 1.0


def runs_trading(options: Any) -> bool:
    """Whether an instance runs the worker or beat: its stop halts trading, its start recovers.

    A web-only instance (``--no-worker --no-beat``) serves the dashboard and API for
    workers that run elsewhere; stopping or starting it halts or resumes nothing.
    """
    return bool(options.run_worker or options.run_beat)


class Component(Protocol):
    """A part of the platform running on its own thread."""

    name: str

    def start(self) -> str:
        """Start and block until running; returns what the operator should read."""

    def stop(self, timeout: float) -> bool:
        """Ask to stop and wait up to ``timeout`` seconds; True when it stopped."""

    def is_alive(self) -> bool: ...


def _thread(name: str, target: Callable[[], Any]) -> threading.Thread:
    """A daemon thread that releases its database connections when ``target`` returns."""

    def run() -> None:
        try:
            target()
        finally:
            connections.close_all()

    return threading.Thread(target=run, name=name, daemon=True)


# --- the parts ----------------------------------------------------------------------

class CeleryWorker:
    """A Celery worker with a thread pool, consuming the configured queues plus its own."""

    name = "worker"

    def __init__(self, app: Any, *, threads: int, private_queue: str) -> None:
        from celery.worker import WorkController

        self.app = app
        self.private_queue = private_queue
        self._ready = threading.Event()
        ready = self._ready

        class _Controller(WorkController):
            def on_consumer_ready(self, consumer: Any) -> None:
                super().on_consumer_ready(consumer)
                ready.set()

        app.finalize()
        app.amqp.queues.select_add(private_queue)
        self._controller = _Controller(
            app=app, hostname=f"runplatform.{os.getpid()}@{socket.gethostname()}",
            pool="threads", concurrency=threads, without_heartbeat=True,
            without_mingle=True, without_gossip=True)
        self._thread = _thread("celery-worker", self._controller.start)
        self.threads = threads

    def start(self) -> str:
        from celery.worker import state

        state.should_stop = None
        state.should_terminate = None
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._ready.wait(0.1):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise PlatformError(f"worker: not consuming from {_broker_label()} "
                                    f"after {START_TIMEOUT_SECONDS:.0f} s")
        queues = ", ".join(sorted(self.app.amqp.queues.consume_from))
        return f"Celery worker, {self.threads} threads, broker {_broker_label()}, queues {queues}"

    def stop(self, timeout: float) -> bool:
        from celery.worker import state

        state.should_stop = 0  # the consumer loop raises WorkerShutdown: a warm stop
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()


class CeleryBeat:
    """Celery beat on django-celery-beat's database scheduler."""

    name = "beat"

    def __init__(self, app: Any, *, max_interval: float) -> None:
        from celery.beat import Service

        self._service = Service(app, scheduler_cls=settings.CELERY_BEAT_SCHEDULER,
                                max_interval=max_interval)
        self._thread = _thread("celery-beat", self._service.start)

    def start(self) -> str:
        from django_celery_beat.models import PeriodicTask

        enabled = PeriodicTask.objects.filter(enabled=True).exclude(
            name__startswith="celery.").count()
        self._thread.start()
        return (f"Celery beat, {settings.CELERY_BEAT_SCHEDULER.rsplit(':', 1)[-1]}, "
                f"{enabled} enabled periodic tasks (editable in the admin)")

    def stop(self, timeout: float) -> bool:
        self._service.stop()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()


class WebServer:
    """The daphne ASGI server (HTTP and websockets) on the twisted reactor, in a thread."""

    name = "web"

    def __init__(self, *, host: str, port: int, access_log: bool) -> None:
        from channels.routing import get_default_application
        from daphne.access import AccessLogGenerator
        from daphne.server import Server

        listening = threading.Event()
        errors: list[str] = []
        self._listening, self._errors = listening, errors

        class _Server(Server):
            def listen_success(self, port: Any) -> None:
                super().listen_success(port)
                listening.set()

            def listen_error(self, failure: Any) -> None:
                errors.append(failure.getErrorMessage())
                listening.set()
                super().listen_error(failure)

        self.host, self.port = host, port
        host_part = f"\\[{host}\\]" if ":" in host else host
        self._server = _Server(
            application=get_default_application(),
            endpoints=[f"tcp:port={port}:interface={host_part}"],
            signal_handlers=False,
            action_logger=AccessLogGenerator(sys.stdout) if access_log else None,
        )
        self._thread = _thread("asgi-server", self._server.run)

    def check_address(self) -> None:
        """Fail before anything starts when the address is taken (the usual start-up error)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise PlatformError(f"web: cannot listen on {self.host}:{self.port}: "
                                    f"{exc.strerror}") from exc

    def start(self) -> str:
        from tradingsite.live import serve_dashboards_here

        serve_dashboards_here()  # its own events go to its websockets, never to the outbox
        self._thread.start()
        if not self._listening.wait(START_TIMEOUT_SECONDS):
            raise PlatformError(f"web: not listening after {START_TIMEOUT_SECONDS:.0f} s")
        if self._errors:
            self._thread.join(STOP_TIMEOUT_SECONDS)
            raise PlatformError(f"web: cannot listen on {self.host}:{self.port}: {self._errors[0]}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (f"daphne ASGI server on http://{host}:{self.port}/ "
                "(admin /admin/, API /api/, websocket /ws/health/)")

    def stop(self, timeout: float) -> bool:
        from twisted.internet import reactor

        reactor.callFromThread(self._server.stop)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def _broker_label() -> str:
    return "Redis" if settings.REDIS_URL else "in-memory (this process)"


def _load_hooks(paths: list[str] | tuple[str, ...]) -> list[Any]:
    return [import_string(path) for path in paths]


def _hook_name(hook: Hook) -> str:
    return f"{getattr(hook, '__module__', '?')}.{getattr(hook, '__qualname__', repr(hook))}"


# --- the platform ---------------------------------------------------------------------

class Platform:
    """Starts the parts, waits for a stop request, stops them in order. See the module doc."""

    def __init__(self, options: PlatformOptions, *, out: Output = print) -> None:
        self.options = options
        self.out = out
        self.stop_requested = threading.Event()
        self.force_requested = threading.Event()
        self.stop_reason = ""
        self.force_reason = ""
        self.startup_hooks: list[Hook] = _load_hooks(settings.PLATFORM_STARTUP_HOOKS)
        self.shutdown_hooks: list[Hook] = _load_hooks(settings.PLATFORM_SHUTDOWN_HOOKS)
        self.stop_checks: list[StopCheck] = _load_hooks(settings.PLATFORM_STOP_CHECKS)
        self.worker: CeleryWorker | None = None
        self.beat: CeleryBeat | None = None
        self.services: list[Component] = []
        self.web: WebServer | None = None
        self.exit_code = 0
        self._deadline: float | None = None

    # -- control --------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        """The first request starts a graceful stop; a second one forces it."""
        if self.stop_requested.is_set():  # no output here: this may run in a signal handler
            self.force_reason = reason
            self.force_requested.set()
            return
        self.stop_reason = reason
        self.stop_requested.set()

    def seconds_left(self) -> float:
        """Time left for the shutdown hooks (the full timeout before the stop starts)."""
        if self._deadline is None:
            return self.options.shutdown_timeout
        return max(0.0, self._deadline - time.monotonic())

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM request a stop; call from the main thread."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop(signal.Signals(signum).name)

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    # -- steps ----------------------------------------------------------------------
    def start(self) -> None:
        """Run the startup hooks and start the parts; raises PlatformError."""
        web = WebServer(host=self.options.host, port=self.options.port,
                        access_log=self.options.access_log)
        web.check_address()
        for hook in self.startup_hooks:
            self.out(f"  startup hook:  {_hook_name(hook)}")
            try:
                hook(self)
            except Exception as exc:
                raise PlatformError(f"startup hook {_hook_name(hook)} failed: {exc!r}") from exc
        from tradingsite.celery import app

        if self.options.run_worker:
            self.worker = CeleryWorker(app, threads=self.options.worker_threads,
                                       private_queue=f"runplatform.{socket.gethostname()}."
                                                     f"{os.getpid()}")
            self._start_part(self.worker)
            self.out(f"  self-check:    {self.check_worker_round_trip()}")
        if self.options.run_beat and not self.stop_requested.is_set():
            self.beat = CeleryBeat(app, max_interval=self.options.beat_max_interval)
            self._start_part(self.beat)
        if runs_trading(self.options):
            for service in _load_hooks(settings.PLATFORM_SERVICES):
                if self.stop_requested.is_set():
                    break
                self.services.append(service())
                self._start_part(self.services[-1])
        if not self.stop_requested.is_set():
            self.web = web
            self._start_part(web)

    def _start_part(self, part: Component) -> None:
        self.out(f"  {part.name + ':':<14} {part.start()}")

    def check_worker_round_trip(self) -> str:
        """Send a ping task to this process's worker and wait for it to run."""
        from celery.signals import task_postrun

        from operations.tasks import ping

        assert self.worker is not None
        token = uuid.uuid4().hex
        answered = threading.Event()

        def on_postrun(sender: Any = None, retval: Any = None, **kwargs: Any) -> None:
            if retval == token:
                answered.set()

        task_postrun.connect(on_postrun, sender=ping, weak=False)
        started = time.monotonic()
        try:
            ping.apply_async(args=[token], queue=self.worker.private_queue)
            ok = answered.wait(PING_TIMEOUT_SECONDS)
        finally:
            task_postrun.disconnect(on_postrun, sender=ping)
        if not ok:
            return (f"WARNING: the worker did not run a task within {PING_TIMEOUT_SECONDS:.0f} s "
                    "(tasks may be stuck)")
        return f"task round trip through the worker in {(time.monotonic() - started) * 1000:.0f} ms"

    def parts(self) -> list[Component]:
        return [part for part in (self.worker, self.beat, *self.services, self.web)
                if part is not None]

    def wait(self) -> None:
        """Block until a stop is requested, a stop check asks for one, or a part ends."""
        while not self.stop_requested.wait(WAIT_POLL_SECONDS):
            dead = [part.name for part in self.parts() if not part.is_alive()]
            if dead:
                self.exit_code = 1
                self.request_stop(f"{dead[0]} stopped unexpectedly")
            elif reason := self._stop_check_reason():
                self.request_stop(reason)

    def _stop_check_reason(self) -> str:
        for check in self.stop_checks:
            try:
                reason = check(self)
            except Exception:  # a failing check (database hiccup) must not stop trading
                log.exception("stop check %s failed", _hook_name(check))
                continue
            if reason:
                return reason
        return ""

    def stop(self) -> int:
        """Run the shutdown hooks (bounded), stop beat, web and worker; the exit code."""
        self.stop_requested.set()
        self.out(f"stopping ({self.stop_reason or 'requested'}) ...")
        self._deadline = time.monotonic() + self.options.shutdown_timeout
        self._run_shutdown_hooks()
        if self.parts():  # it ran: receivers may still use the worker and the database
            self._announce("platform_stopping", reason=self.stop_reason or "requested",
                           clean=self.exit_code == 0)
        timeout = STOP_TIMEOUT_SECONDS
        if self.force_requested.is_set():
            self.out(f"  {self.force_reason} again: forcing the stop")
            timeout = FORCED_STOP_TIMEOUT_SECONDS
        elif self.exit_code:  # the shutdown already ran late: don't wait on hung calls too
            timeout = FORCED_STOP_TIMEOUT_SECONDS
        for part in (*self.services, self.beat, self.web, self.worker):
            if part is None or not part.is_alive():
                continue
            if part.stop(timeout):
                self.out(f"  {part.name}: stopped")
            else:
                self.exit_code = 1
                self.out(f"  {part.name}: still running after {timeout:.0f} s, abandoned")
        self.out("stopped cleanly" if self.exit_code == 0 else f"stopped with exit code {self.exit_code}")
        return self.exit_code

    def _run_shutdown_hooks(self) -> None:
        pending = list(self.shutdown_hooks)

        def run_hooks() -> None:
            while pending:
                hook = pending[0]
                self.out(f"  shutdown hook: {_hook_name(hook)}")
                try:
                    hook(self)
                except Exception as exc:
                    self.exit_code = 1
                    self.out(f"  shutdown hook {_hook_name(hook)} failed: {exc!r}")
                pending.pop(0)

        runner = _thread("shutdown-hooks", run_hooks)
        runner.start()
        while runner.is_alive():
            runner.join(0.1)
            if self.force_requested.is_set() or self.seconds_left() <= 0:
                break
        if pending:
            self.exit_code = 1
            why = "forced" if self.force_requested.is_set() else \
                f"past shutdownTimeoutSeconds={self.options.shutdown_timeout:g}"
            self.out(f"  shutdown hooks abandoned ({why}): "
                     + ", ".join(_hook_name(hook) for hook in pending))

    def run(self) -> int:
        """Start, wait for a stop request, stop; returns the process exit code."""
        self.install_signal_handlers()
        try:
            self.start()
        except PlatformError as exc:
            self.exit_code = 1
            self.stop_reason = "start-up failed"
            self.out(f"ERROR: {exc}")
            self.stop()
            return self.exit_code
        if not self.stop_requested.is_set():
            self._announce("platform_started", details=", ".join(p.name for p in self.parts()))
            self.out("running; stop with Ctrl+C or SIGTERM")
            self.wait()
        return self.stop()

    @property
    def mode(self) -> str:
        """``embedded`` (worker or beat here) or ``web`` (web only)."""
        return "embedded" if runs_trading(self.options) else "web"

    def _announce(self, name: str, **kwargs: Any) -> None:
        """Tell receivers (notifications, the embedded watchdog); a failing one is only reported."""
        signal_ = {"platform_started": platform_started, "platform_stopping": platform_stopping}[name]
        for receiver, result in signal_.send_robust(
                sender=Platform, platform=self, mode=self.mode, host=socket.gethostname(),
                pid=os.getpid(), **kwargs):
            if isinstance(result, Exception):
                self.out(f"  {name} receiver {_hook_name(receiver)} failed: {result!r}")

# --- the same services in a production Celery worker -----------------------------------------

_worker_services: list[Any] = []


def services_start_in_worker(sender: Any = None, **kwargs: Any) -> None:
    """Celery ``worker_ready``: a production worker hosts the services too (one owner per
    account across all of them, by lease). A failing service is logged; the worker runs on."""
    for service_class in _load_hooks(settings.PLATFORM_SERVICES):
        try:
            service = service_class()
            log.info("service started: %s", service.start())
            _worker_services.append(service)
        except Exception:
            log.exception("service %s did not start", _hook_name(service_class))


def services_stop_in_worker(sender: Any = None, **kwargs: Any) -> None:
    """Celery ``worker_shutting_down``: stop the services, giving their accounts up."""
    while _worker_services:
        service = _worker_services.pop()
        try:
            service.stop(STOP_TIMEOUT_SECONDS)
        except Exception:
            log.exception("service %s did not stop cleanly", getattr(service, "name", service))
