"""GET /metrics: the server's state in Prometheus' text format, and the request counting behind it.

Owns the app's own registry (never prometheus_client's global one: one process may run many
apps), the middleware that counts requests by method, route template and status with their
durations, and the collector that reads everything else when scraped: devices and pending
deliveries from the store, answers and delivery ends the dispatcher recorded, devices it holds,
and each channel's connections. Counting on the request path is plain integer arithmetic, and
nothing here runs per push. Must not write anything, nor let a database that does not answer
turn a scrape into an error: the store's families are then left out and `owlmetry_database_up`
says 0. Tokens, keys and JWTs never reach a label.
"""

import asyncio
import bisect
import logging
import platform
import time

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

import owlmetry
from owlmetry.clock import now_ms
from owlmetry.http.access_log import route_template
from owlmetry.http.context import CONFIG, DISPATCHER, STORE
from owlmetry.store import (
    RECORDED_OUTCOMES,
    DatabaseUnavailable,
    DeliveryStatus,
    DeviceChannel,
    PendingState,
    check_database_url,
)

log = logging.getLogger("owlmetry.http")

PATH = "/metrics"
# Label values stay few whatever clients send: a route's template, never its path; methods
# outside these are "other".
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds; Prometheus' defaults, which suit both a quick inbox list and a large enqueue.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A delivery's end by its status label; PENDING is a delivery put back for a retry.
DELIVERY_ENDS = {DeliveryStatus.SENT: "sent", DeliveryStatus.FAILED: "failed",
                 DeliveryStatus.SKIPPED: "skipped", DeliveryStatus.PENDING: "requeued"}
# Well inside a scraper's timeout (Prometheus: 10 s), so a slow database costs its families,
# not the scrape.
STORE_TIMEOUT_S = 3.0


class _Durations:
    __slots__ = ("buckets", "total")

    def __init__(self):
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is above every bound
        self.total = 0.0


class RequestCounts:
    """Requests by (method, route, status) and durations by (method, route), as plain ints: one
    event loop touches them, so no lock."""

    def __init__(self):
        self.requests: dict[tuple[str, str, int], int] = {}
        self.durations: dict[tuple[str, str], _Durations] = {}

    def add(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        durations = self.durations.get((method, route))
        if durations is None:
            durations = self.durations[(method, route)] = _Durations()
        durations.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        durations.total += seconds


@web.middleware
async def count_requests(request: web.Request, handler):
    """Outside every middleware but `forwarded` (which clones the request first, when proxies
    are trusted), so it sees every answer as it leaves, errors rendered with their status."""
    route = route_template(request) or UNMATCHED
    if route == PATH:  # a scrape does not change what it reads
        return await handler(request)
    method = request.method if request.method in METHODS else "other"
    start = time.perf_counter()
    status = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # redirects and the like, which pass the JSON errors
        status = exc.status
        raise
    finally:
        # A request cancelled mid-way (the server stopping) has no status and is not counted.
        if status is not None:
            request.app[METRICS].requests.add(method, route, status,
                                              time.perf_counter() - start)


class StoreReadings:
    """What the store said during one scrape."""

    __slots__ = ("devices", "pending")

    def __init__(self, devices: dict[tuple[str, str], int], pending: dict[PendingState, int]):
        self.devices = devices
        self.pending = pending


async def read_store(store) -> StoreReadings | None:
    """The store's part of a scrape; None when the database does not answer in time."""
    try:
        async with asyncio.timeout(STORE_TIMEOUT_S):
            devices, pending = await asyncio.gather(
                store.device_counts(list(DeviceChannel)), store.pending_deliveries(now_ms()))
    except DatabaseUnavailable:
        return None  # the store said it, once
    except Exception as exc:  # noqa: BLE001 -- any failure is "down"; one line, not a
        # traceback, since it repeats at every scrape while the database is away.
        log.warning("metrics: the database did not answer: %s", str(exc) or type(exc).__name__)
        return None
    return StoreReadings(devices, pending)


class AppCollector(Collector):
    """Every owlmetry_ family, read from the app's objects when collected."""

    def __init__(self, app: web.Application, requests: RequestCounts):
        self._app = app
        self._requests = requests
        # Set by the scrape just before it collects, with no await in between, so concurrent
        # scrapes cannot see each other's.
        self.readings: StoreReadings | None = None

    def collect(self):
        app = self._app
        yield self._build_info()
        yield from self._http()
        dispatcher = app.get(DISPATCHER)
        if dispatcher is not None:
            yield from self._dispatcher(dispatcher)
            yield from self._connections(dispatcher.channels)
        yield from self._store(self.readings)

    def _build_info(self):
        info = InfoMetricFamily("owlmetry_build", "The running server: its version, Python and "
                                "database backend.")
        info.add_metric([], {"version": owlmetry.__version__,
                             "python": platform.python_version(),
                             "database": check_database_url(self._app[CONFIG].database_url)})
        return info

    def _http(self):
        requests = CounterMetricFamily(
            "owlmetry_http_requests", "HTTP requests answered, by method, route template "
            "(\"unmatched\" when no route takes the path and method: 404, 405) and status; "
            "/metrics itself is not counted.",
            labels=["method", "route", "status"])
        for (method, route, status), count in sorted(self._requests.requests.items()):
            requests.add_metric([method, route, str(status)], count)
        yield requests
        durations = HistogramMetricFamily(
            "owlmetry_http_request_duration_seconds", "Time from a request's arrival to its "
            "response (body written after), by method and route template.",
            labels=["method", "route"])
        for (method, route), counted in sorted(self._requests.durations.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counted.buckets):
                cumulative += count
                buckets.append((bound, cumulative))
            durations.add_metric([method, route], buckets, counted.total)
        yield durations

    def _dispatcher(self, dispatcher):
        channels = sorted(dispatcher.channels)
        pushes = CounterMetricFamily(
            "owlmetry_pushes", "Device answers recorded by this process's dispatcher, by "
            "channel and outcome: delivered; removed (dead token, device deleted); failed; "
            "skipped (no credentials).", labels=["channel", "outcome"])
        recorded = dispatcher.recorder.recorded
        for channel in channels:
            for outcome in RECORDED_OUTCOMES:
                pushes.add_metric([channel, outcome], recorded.get((channel, outcome), 0))
        yield pushes
        deliveries = CounterMetricFamily(
            "owlmetry_deliveries", "Deliveries (a notification on a channel) this process "
            "finished, by channel and status: sent, failed, skipped, or requeued (devices left "
            "to retry after a backoff).", labels=["channel", "status"])
        ended = dispatcher.recorder.ended
        for channel in channels:
            for status, label in DELIVERY_ENDS.items():
                deliveries.add_metric([channel, label], ended.get((channel, status), 0))
        yield deliveries
        yield GaugeMetricFamily(
            "owlmetry_dispatcher_deliveries_held", "Deliveries this process has claimed and "
            "not yet finished.", value=dispatcher.held)
        yield GaugeMetricFamily(
            "owlmetry_dispatcher_devices_in_flight", "Devices of the deliveries this process "
            "holds: being sent to, or answered and not yet recorded.", value=dispatcher.in_flight)

    def _connections(self, channels):
        connections = GaugeMetricFamily(
            "owlmetry_channel_connections", "Open connections to a channel's push service "
            "(mobile_push: HTTP/2 connections to the APNs host of the environment, and to "
            "FCM as environment \"fcm\", one host for both).",
            labels=["channel", "environment"])
        in_flight = GaugeMetricFamily(
            "owlmetry_channel_in_flight", "Pushes on the wire waiting for their answer "
            "(mobile_push: open HTTP/2 streams to APNs and FCM).", labels=["channel", "environment"])
        queued = GaugeMetricFamily(
            "owlmetry_channel_queued", "Pushes waiting for room on a connection.",
            labels=["channel", "environment"])
        for name in sorted(channels):
            for environment, stats in sorted(channels[name].connection_stats().items()):
                connections.add_metric([name, environment], stats.connections)
                in_flight.add_metric([name, environment], stats.in_flight)
                queued.add_metric([name, environment], stats.queued)
        yield from (connections, in_flight, queued)

    def _store(self, readings: StoreReadings | None):
        yield GaugeMetricFamily(
            "owlmetry_database_up", "1 if the database answered this scrape's questions; when "
            "0, owlmetry_registered_devices and owlmetry_deliveries_pending are left out.",
            value=0 if readings is None else 1)
        if readings is None:
            return
        devices = GaugeMetricFamily(
            "owlmetry_registered_devices", "Devices in the registry (all processes), by "
            "the channel they registered with (ios_push, mobile_push) and environment.",
            labels=["channel", "environment"])
        for (channel, environment), count in sorted(readings.devices.items()):
            devices.add_metric([channel, environment], count)
        yield devices
        pending = GaugeMetricFamily(
            "owlmetry_deliveries_pending", "Deliveries waiting in the queue (all processes): "
            "due (claimable now), later (claimed under a lease, or waiting out a retry "
            "backoff).", labels=["state"])
        for state in PendingState:
            pending.add_metric([state], readings.pending.get(state, 0))
        yield pending


class Metrics:
    """An app's request counts and registry."""

    def __init__(self, app: web.Application):
        self.requests = RequestCounts()
        self.collector = AppCollector(app, self.requests)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, fds

    def render(self, readings: StoreReadings | None) -> bytes:
        self.collector.readings = readings
        try:
            return generate_latest(self.registry)
        finally:
            self.collector.readings = None


METRICS = web.AppKey("metrics", Metrics)


async def scrape(request: web.Request) -> web.Response:
    readings = await read_store(request.app[STORE])
    body = request.app[METRICS].render(readings)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def install(app: web.Application) -> None:
    """The route and the app's metrics; `count_requests` goes first in the app's middleware
    (after `forwarded`, when that is there)."""
    app[METRICS] = Metrics(app)
    app.router.add_get(PATH, scrape, allow_head=False)
