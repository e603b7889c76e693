"""What both HTTP benchmarks do in their server process: serve an app on a loopback port,
under cProfile when the parent asks for it (`XINYI_BENCH_PROFILE`, written when it stops)."""
from __future__ import annotations

import os

from aiohttp import web

PROFILE_ENV = "XINYI_BENCH_PROFILE"


def run_server(app: web.Application, port: int) -> None:
    if os.environ.get(PROFILE_ENV):
        import cProfile

        profile = cProfile.Profile()
        profile.enable()

        async def dump(_app: web.Application) -> None:
            profile.disable()
            profile.dump_stats(os.environ[PROFILE_ENV])

        app.on_shutdown.append(dump)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def profiled(path: str | None, run: int) -> dict[str, str]:
    """The environment of a server process, profiled to `path.<run>` when `path` is given."""
    env = dict(os.environ)
    if path:
        env[PROFILE_ENV] = f"{path}.{run}"
    return env
