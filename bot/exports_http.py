"""The exports over HTTP, for the operator console: a download streamed while it is made, and,
for large exports, a background export whose page shows its progress and then offers the file.

The console owns logins and roles. It mounts these routes with `setup(app, viewer)`, where
`await viewer(request)` checks the session and the role (raising 403 or a redirect to the
login) and answers a `Viewer`: what its account may see (the scope) and in which language.
Nothing here knows about accounts.

    GET  {prefix}/                          the form: which list, which format, which days
    GET  {prefix}/{what}.{csv|xlsx}         the file, streamed as it is made (?from=&to=&hospital=)
    POST {prefix}/{what}.{csv|xlsx}         start it in the background: 303 to its page
    GET  {prefix}/jobs/{id}                 its page: rows written so far, then the download
    GET  {prefix}/jobs/{id}/progress        the same as JSON
    GET  {prefix}/jobs/{id}/file            the finished file
    POST {prefix}/jobs/{id}/cancel          stop it; its file is deleted
"""
from __future__ import annotations

import asyncio
import html
import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Mapping

from aiohttp import web

from billing.clock import CHINA_TIME
from billing.errors import BillingError
from billing.exports import Scope
from bot.export_files import CHUNK_BYTES, EXPORTS, FORMATS, MEDIA_TYPES, Export, counted, csv_chunks, write_export
from bot.hospital_api import CORE
from handlers.i18n import t

log = logging.getLogger(__name__)
PREFIX = "/admin/exports"
KEEP_S = 3600  # a finished export's file is kept this long for its download
RUNNING_PER_OWNER = 2
REFRESH_S = 1  # how often a running export's page reloads itself (no JavaScript needed)


@dataclass(frozen=True)
class Viewer:
    scope: Scope  # the role's limits: its hospital, its community's staff (dates come from the request)
    locale: str
    owner: str  # whose background exports these are: an account name
    form_fields: Mapping[str, str] = field(default_factory=dict)  # hidden inputs each form carries (a CSRF token)


ViewerOf = Callable[[web.Request], Awaitable[Viewer]]


@dataclass(eq=False)
class Job:
    id: str
    owner: str
    export: Export
    fmt: str
    locale: str
    now: datetime
    path: Path
    rows: int = 0
    state: str = "running"  # then done, failed or cancelled
    error: str = ""
    finished_at: float | None = None
    task: asyncio.Task | None = None

    def tick(self, n: int) -> None:
        self.rows += n


class Jobs:
    """The background exports of one app: their files in a folder of their own, removed with it."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="xinyi-exports-"))
        self._jobs: dict[str, Job] = {}

    def start(self, export: Export, fmt: str, rows: AsyncIterator, viewer: Viewer, now: datetime) -> Job:
        self._prune()
        if sum(job.owner == viewer.owner and job.state == "running" for job in self._jobs.values()) >= RUNNING_PER_OWNER:
            raise web.HTTPTooManyRequests(text=t("已有 {count} 个导出正在进行，请等它们完成。", viewer.locale,
                                                 count=RUNNING_PER_OWNER))
        job_id = secrets.token_urlsafe(16)
        job = Job(job_id, viewer.owner, export, fmt, viewer.locale, now, self.folder / f"{job_id}.{fmt}")
        job.task = asyncio.create_task(self._run(job, rows), name=f"export {export.name} {job_id}")
        self._jobs[job_id] = job
        return job

    async def _run(self, job: Job, rows: AsyncIterator) -> None:
        try:
            with job.path.open("wb") as target:
                await write_export(job.export, job.fmt, counted(rows, job.tick), job.locale, target)
            job.state = "done"
        except asyncio.CancelledError:
            job.state = "cancelled"
            job.path.unlink(missing_ok=True)
            raise
        except Exception as exc:
            log.exception("export %s %s failed", job.export.name, job.id)
            job.state = "failed"
            job.error = exc.message if isinstance(exc, BillingError) else t("导出失败，请稍后再试。", job.locale)
            job.path.unlink(missing_ok=True)
        finally:
            job.finished_at = time.monotonic()

    def get(self, job_id: str, viewer: Viewer) -> Job:
        """The viewer's own job; another account's is as unknown as one that never was."""
        job = self._jobs.get(job_id)
        if job is None or job.owner != viewer.owner:
            raise web.HTTPNotFound(text=t("没有这个导出，或它已过期。", viewer.locale))
        return job

    async def cancel(self, job: Job) -> None:
        if job.task is not None and not job.task.done():
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)

    def _prune(self) -> None:
        expired = [job for job in self._jobs.values()
                   if job.finished_at is not None and time.monotonic() - job.finished_at > KEEP_S]
        for job in expired:
            job.path.unlink(missing_ok=True)
            del self._jobs[job.id]

    async def close(self) -> None:
        for job in list(self._jobs.values()):
            await self.cancel(job)
        shutil.rmtree(self.folder, ignore_errors=True)


EXPORT_JOBS = web.AppKey("export_jobs", Jobs)


def setup(app: web.Application, viewer: ViewerOf, prefix: str = PREFIX, *, at: str = "") -> None:
    """Mount the routes under `prefix` of `app`, itself mounted at `at` (the pages' links hold
    both); every one asks `viewer(request)` first."""

    async def jobs_ctx(app: web.Application) -> AsyncIterator[None]:
        app[EXPORT_JOBS] = Jobs()
        yield
        await app[EXPORT_JOBS].close()

    app.cleanup_ctx.append(jobs_ctx)
    pages = _Pages(viewer, at + prefix)
    app.router.add_get(prefix + "/", pages.index)
    app.router.add_get(prefix + r"/{what}.{fmt:csv|xlsx}", pages.download)
    app.router.add_post(prefix + r"/{what}.{fmt:csv|xlsx}", pages.start)
    app.router.add_get(prefix + "/jobs/{job}", pages.job_page)
    app.router.add_get(prefix + "/jobs/{job}/progress", pages.progress)
    app.router.add_get(prefix + "/jobs/{job}/file", pages.job_file)
    app.router.add_post(prefix + "/jobs/{job}/cancel", pages.cancel)


async def stream_export(request: web.Request, export: Export, fmt: str, rows: AsyncIterator, locale: str,
                        now: datetime) -> web.StreamResponse:
    """Send `rows` as a file while they are read: CSV chunk by chunk; XLSX, which is a zip
    whose directory comes last, through a temporary file. Errors found before the first byte
    (an unknown hospital) are answered as errors; after it the download is cut short."""
    if fmt == "csv":
        chunks = csv_chunks(export, rows, locale)
        first = await anext(chunks)
        response = await _prepared(request, export, fmt, locale, now)
        await response.write(first)
        async for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
        return response
    with tempfile.TemporaryDirectory(prefix="xinyi-export-") as folder:
        path = Path(folder) / f"export.{fmt}"
        with path.open("wb") as target:
            await write_export(export, fmt, rows, locale, target)
        return await send_file(request, export, fmt, locale, now, path)


async def send_file(request: web.Request, export: Export, fmt: str, locale: str, now: datetime,
                    path: Path) -> web.StreamResponse:
    response = await _prepared(request, export, fmt, locale, now)
    with path.open("rb") as source:
        while chunk := source.read(CHUNK_BYTES):
            await response.write(chunk)
    await response.write_eof()
    return response


async def _prepared(request: web.Request, export: Export, fmt: str, locale: str, now: datetime) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": MEDIA_TYPES[fmt],
        "Content-Disposition": export.disposition(fmt, now, locale),
        "Cache-Control": "no-store",  # personal data, even masked
    })
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


class _Pages:
    def __init__(self, viewer: ViewerOf, prefix: str) -> None:
        self.viewer = viewer
        self.prefix = prefix

    async def index(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        loc = viewer.locale
        since, until = t("从", loc), t("到", loc)
        forms = "".join(
            f'<form method="post" action="{self.prefix}/{export.name}.{fmt}">{_hidden(viewer)}'
            f'<label>{since} <input type="date" name="from"></label> '
            f'<label>{until} <input type="date" name="to"></label> '
            f'<button>{html.escape(t(export.title, loc))} {fmt.upper()}</button></form>'
            for export in EXPORTS.values() for fmt in FORMATS
        )
        return _page(t("导出", loc), forms, loc)

    async def download(self, request: web.Request) -> web.StreamResponse:
        viewer = await self.viewer(request)
        export, fmt = self._export(request, viewer)
        core = request.app[CORE]
        now = core.clock.now()
        scope = _scope(viewer, request.query)
        try:
            return await stream_export(request, export, fmt, export.rows(core, now, scope), viewer.locale, now)
        except BillingError as exc:
            raise web.HTTPNotFound(text=exc.message) if exc.http_status == 404 else web.HTTPBadRequest(text=exc.message)

    async def start(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        export, fmt = self._export(request, viewer)
        core = request.app[CORE]
        now = core.clock.now()
        scope = _scope(viewer, await request.post())
        job = request.app[EXPORT_JOBS].start(export, fmt, export.rows(core, now, scope), viewer, now)
        raise web.HTTPSeeOther(f"{self.prefix}/jobs/{job.id}")

    async def job_page(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        job = request.app[EXPORT_JOBS].get(request.match_info["job"], viewer)
        loc = viewer.locale
        title = t(job.export.title, loc)
        if job.state == "running":
            written, cancel = t("已写入 {rows} 行，请稍候……", loc, rows=job.rows), t("取消导出", loc)
            body = (f'<p role="status">{written}</p>'
                    f'<form method="post" action="{self.prefix}/jobs/{job.id}/cancel">{_hidden(viewer)}'
                    f'<button>{cancel}</button></form>')
            return _page(title, body, loc, refresh=True)
        if job.state == "done":
            done, download = t("导出完成：共 {rows} 行。", loc, rows=job.rows), t("下载", loc)
            body = (f'<p role="status">{done}</p>'
                    f'<p><a href="{self.prefix}/jobs/{job.id}/file" download>{download} {job.fmt.upper()}</a></p>')
        elif job.state == "failed":
            body = f'<p role="alert">{html.escape(job.error)}</p>'
        else:
            body = '<p role="status">' + t("导出已取消。", loc) + "</p>"
        back = t("返回导出", loc)
        return _page(title, body + f'<p><a href="{self.prefix}/">{back}</a></p>', loc)

    async def progress(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        job = request.app[EXPORT_JOBS].get(request.match_info["job"], viewer)
        return web.json_response({"state": job.state, "rows": job.rows, "error": job.error or None,
                                  "file": f"{self.prefix}/jobs/{job.id}/file" if job.state == "done" else None})

    async def job_file(self, request: web.Request) -> web.StreamResponse:
        viewer = await self.viewer(request)
        job = request.app[EXPORT_JOBS].get(request.match_info["job"], viewer)
        if job.state != "done":
            raise web.HTTPConflict(text=t("导出还没有完成。", viewer.locale))
        return await send_file(request, job.export, job.fmt, job.locale, job.now, job.path)

    async def cancel(self, request: web.Request) -> web.Response:
        viewer = await self.viewer(request)
        jobs = request.app[EXPORT_JOBS]
        job = jobs.get(request.match_info["job"], viewer)
        await jobs.cancel(job)
        raise web.HTTPSeeOther(f"{self.prefix}/jobs/{job.id}")

    def _export(self, request: web.Request, viewer: Viewer) -> tuple[Export, str]:
        export = EXPORTS.get(request.match_info["what"])
        if export is None:
            raise web.HTTPNotFound(text=t("没有这种导出。", viewer.locale))
        return export, request.match_info["fmt"]


def _scope(viewer: Viewer, params: Mapping[str, str]) -> Scope:
    """The viewer's scope with the days the request asks for (China time, `to` included); an
    account without a hospital of its own may ask for one hospital's bills."""
    hospital = params.get("hospital") or None
    if hospital is not None and viewer.scope.hospital is not None and hospital != viewer.scope.hospital:
        raise web.HTTPForbidden(text=t("您只能导出本院的数据。", viewer.locale))
    since, until = (_day(params, name, viewer.locale) for name in ("from", "to"))
    if since and until and since > until:
        raise web.HTTPBadRequest(text=t("开始日期晚于结束日期。", viewer.locale))
    return Scope(
        hospital=viewer.scope.hospital or hospital,
        staff_ids=viewer.scope.staff_ids,
        since=datetime.combine(since, datetime.min.time(), CHINA_TIME) if since else None,
        until=datetime.combine(until + timedelta(days=1), datetime.min.time(), CHINA_TIME) if until else None,
    )


def _day(params: Mapping[str, str], name: str, locale: str) -> date | None:
    text = params.get(name) or ""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise web.HTTPBadRequest(text=t("日期格式应为 2026-03-01：{text}", locale, text=text)) from None


def _hidden(viewer: Viewer) -> str:
    return "".join(f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                   for name, value in viewer.form_fields.items())


def _page(title: str, body: str, locale: str, *, refresh: bool = False) -> web.Response:
    lang = {"zh_Hans": "zh-Hans", "zh_Hant": "zh-Hant"}.get(locale, "en")
    meta = f'<meta http-equiv="refresh" content="{REFRESH_S}">' if refresh else ""
    return web.Response(content_type="text/html", headers={"Cache-Control": "no-store"}, text=(
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">{meta}'
        f'<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>{body}</body></html>'
    ))
