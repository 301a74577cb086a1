"""Running the app on a socket with the server's own connections (`protocol.py`).

Owns `AppRunner` (aiohttp's, making `protocol.Server`s) and `run_app`, what `owlmetry serve`
runs: aiohttp's `web.run_app` has no way to choose the runner, so this is its loop, signals
(SIGTERM/SIGINT end it gracefully), clean-up and garbage collector, for one TCP address. Tests
start the same runner. It must not build the app or read the configuration.
"""

import asyncio
import gc
from collections.abc import Callable
from contextlib import suppress

from aiohttp import web

from owlmetry.http.protocol import LIMITS, Server, Timeouts

KEEPALIVE_S = 75.0  # web.run_app's, as nginx's keepalive_timeout
DEFAULT_TIMEOUTS = Timeouts()
# A 50,000-recipient request keeps a few hundred thousand containers alive for seconds; with
# the default thresholds the collector then ran full collections of 50-110 ms, each finding
# nothing to free, and every other request waited for them (benchmarks/RESULTS.md, "Requests
# while producers enqueue"). Young collections stay frequent; full ones become rare.
GC_THRESHOLDS = (50_000, 20, 100)


def settle_garbage_collector() -> None:
    """Once started: what exists now (modules, the app) lives as long as the process, so the
    collector stops walking it; and full collections become rare."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class CannotListen(Exception):
    """The address could not be bound (in use, not this host's, not permitted)."""


class AppRunner(web.AppRunner):
    def __init__(self, app: web.Application, *, timeouts: Timeouts = DEFAULT_TIMEOUTS, **kwargs):
        kwargs = {**LIMITS, **kwargs}
        super().__init__(app, **kwargs)
        self.timeouts = timeouts
        self.server_kwargs = {name: value for name, value in kwargs.items()
                              if name not in ("handle_signals", "shutdown_timeout")}

    async def _make_server(self) -> web.Server:
        # aiohttp's own (it starts the app and checks the options), remade as ours.
        server = await super()._make_server()
        return Server(server.request_handler, request_factory=server.request_factory,
                      timeouts=self.timeouts, **self.server_kwargs)


def run_app(app: web.Application, *, host: str, port: int, loop: asyncio.AbstractEventLoop,
            timeouts: Timeouts, shutdown_timeout: float, print: Callable[[str], None],
            **runner_options) -> None:
    """Serve until SIGTERM or SIGINT, as `web.run_app(app, host=..., port=...)` does."""

    async def serve() -> None:
        runner = AppRunner(app, timeouts=timeouts, handle_signals=True,
                           shutdown_timeout=shutdown_timeout, keepalive_timeout=KEEPALIVE_S,
                           **runner_options)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            settle_garbage_collector()
            print(f"listening on http://{host}:{port}")
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    main = loop.create_task(serve())
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            rest = asyncio.all_tasks(loop)
            for task in rest:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
