"""The starlette application: routes, the JSON error contract and the request guards.

Guards (``_guard.py``): exact Host allowlist, optional token, same-origin ``/api``, body size. Here: POST
bodies must be ``application/json`` (415 otherwise, which also stops cross-site form posts) nested at most
``MAX_JSON_DEPTH`` deep; static files come from an allowlist read at start-up (the path never reaches the
file system); the job queue is bounded (429 + Retry-After); every request's work runs under a hook that
stops it at its next forward when it is cancelled or the server stops.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import warnings
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..report._techniques import techniques
from . import _circuits, _techniques
from . import _compute as C
from ._cancel import Cancelled, cancellable
from ._guard import BodyTooLarge, Guard, _err
from ._jobs import Jobs, QueueFull
from ._sae import ServedSAE, load_sae
from ._specs import RequestError
from ._vision import DEFAULT_VISION_MODEL, MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, VisionTab, size_hint

if TYPE_CHECKING:
    from ..core._model import Model

MAX_BODY = 1_000_000
MAX_JSON_DEPTH = 32
STATIC_DIR = Path(__file__).parent / "static"
UPLOAD_PATHS = ("/api/vision", "/api/vision/job")  # raw image bodies (the Image tab), with their own size cap


def error_response(exc: BaseException) -> tuple[int, str]:
    """``(status, one-line message)`` for an exception raised by model work."""
    from ..core import SiteNotFoundError, TsiError

    msg = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, RequestError):
        return exc.status, msg
    if isinstance(exc, Cancelled):
        return 503, msg
    if isinstance(exc, SiteNotFoundError):
        return 400, msg
    if isinstance(exc, (TsiError, ValueError, IndexError, KeyError)):
        return 400, msg
    return 500, f"internal error ({type(exc).__name__}: {msg[:200]})"


def _load_static(root: Path) -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in {".html", ".js", ".css", ".svg", ".ico", ".png"}:
            rel = p.relative_to(root).as_posix()
            ctype = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}.get(p.suffix) or (
                mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            )
            files[rel] = (p.read_bytes(), ctype)
    return files


def create_app(
    model: Model,
    *,
    stores: Mapping[str, Any] | Iterable[Any] | None = None,
    saes: Mapping[str, Any] | Iterable[Any] | None = None,
    vectors: Mapping[str, Any] | Iterable[Any] | None = None,
    model_name: str = "model",
    attention: bool = True,
    corpus: Iterable[str] | None = None,
    max_body: int = MAX_BODY,
    allowed_hosts: Iterable[str] | None = None,
    job_workers: int = 2,
    max_jobs: int = 16,
    max_cost: int = C.MAX_COST,
    token: str | None = None,
    vision_model: Any = DEFAULT_VISION_MODEL,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> Starlette:
    """The ``tsi serve`` web app around an already loaded ``tsi.Model``.

    Args:
        model: a ``tsi.Model`` (shared by every request; calls run in worker threads).
        stores: activation stores (directories or opened stores); their tokens are the SAE browser's corpus.
        saes: SAE directories in SAELens layout (or ``{name: dir}``), shown in the feature browser.
        vectors: steering vector files (``SteeringVector.save``), a folder of them, or ``{name: vector}``.
        attention: expose attention patterns; a Hugging Face model is switched to eager attention here,
            once, before any request runs (switching per request would race with other requests).
        corpus: texts for the SAE statistics when no store is given (default: a small built-in list).
        max_body: the largest request body accepted, in bytes (413 beyond it).
        allowed_hosts: Host header values accepted, matched exactly (None: any; the CLI passes the
            local names plus each ``--allowed-host``).
        max_jobs: background jobs queued or running at once (429 with Retry-After beyond it).
        max_cost: the largest cost of one request, sites x positions x tokens (400 beyond it).
        token: when given, every request must carry it (``?token=`` once, then a cookie or ``X-TSI-Token``).
        vision_model: the Image tab's model: an embedded name (loaded on first use), a ``tsi.Model`` or an
            ``nn.Module``; None turns the tab off.
        max_image_bytes, max_image_pixels: the largest image upload (413 beyond either).
    """
    state = C.State(model=model, model_name=model_name, max_cost=max_cost)
    state.vectors.update(_vectors(vectors))
    state.saes.update(_saes(saes))
    state.stores.update(_stores(stores))
    if corpus is not None:
        state.corpus, state.corpus_name = tuple(corpus), "given corpus"
    elif state.stores:
        state.corpus, state.corpus_name = _store_corpus(state.stores)
    if attention:
        state.attention, state.attention_note = _enable_attention(model)
    static = _load_static(STATIC_DIR)
    jobs = Jobs(job_workers, max_pending=max_jobs)
    vision = VisionTab(vision_model, max_image_bytes, max_image_pixels)
    state.techniques = dict(techniques())
    kinds = {**C.KINDS, **_circuits.KINDS}
    kinds.update(_techniques.kinds(state.techniques, taken=kinds))

    def check_cost(kind: str, body: Mapping[str, Any]) -> None:
        if kind in _circuits.KINDS:
            _circuits.check_cost(state, body)
        else:
            C.check_cost(state, kind, body)

    async def body_of(request: Request) -> Mapping[str, Any]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(
                f"send the request body as JSON with Content-Type: application/json, not {ctype or 'none'!r}",
                415,
            )
        raw = await request.body()
        if _json_depth(raw) > MAX_JSON_DEPTH:
            raise RequestError(f"the request body is nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            data = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise RequestError(f"the request body is not valid JSON ({str(exc)[:100]})") from None
        return C.S.obj(data)

    def work(fn, *args, cancel=None):  # model work in a thread, stopped at the next forward on shutdown
        def call():
            with cancellable(model, jobs.stopping, *(() if cancel is None else (cancel,))):
                return fn(*args)

        return call

    def endpoint(fn):  # wrap an async handler: RequestError / model errors -> JSON 4xx/5xx
        async def handler(request: Request) -> Response:
            try:
                return await fn(request)
            except BodyTooLarge:
                raise
            except QueueFull as exc:
                return _err(429, str(exc), {"Retry-After": str(exc.retry_after)})
            except Exception as exc:  # noqa: BLE001 - every error becomes one JSON line
                status, msg = error_response(exc)
                return _err(status, msg)

        return handler

    def compute(kind: str):
        async def handler(request: Request) -> Response:
            body = await body_of(request)
            check_cost(kind, body)
            return JSONResponse(await run_in_threadpool(work(kinds[kind], state, body)))

        return endpoint(handler)

    async def index(request: Request) -> Response:
        data, ctype = static["index.html"]
        return Response(data, media_type=ctype, headers=_SECURITY_HEADERS)

    async def static_file(request: Request) -> Response:
        item = static.get(request.path_params["path"])
        if item is None:
            return _err(404, "no such static file")
        return Response(item[0], media_type=item[1], headers=_SECURITY_HEADERS)

    async def info(request: Request) -> Response:
        return JSONResponse(C.info(state))

    async def sites(request: Request) -> Response:
        return JSONResponse(C.sites(state, request.query_params.get("pattern")))

    async def vectors_get(request: Request) -> Response:
        return JSONResponse(C.vectors_list(state))

    async def vectors_post(request: Request) -> Response:
        body = await body_of(request)
        return JSONResponse(await run_in_threadpool(work(C.make_vector, state, body)), status_code=201)

    async def jobs_post(request: Request) -> Response:
        body = await body_of(request)
        kind = body.get("kind")
        if kind not in kinds:
            raise RequestError(f"'kind' must be one of {', '.join(kinds)}, not {kind!r}")
        params = C.S.obj(body.get("params", {}), "'params'")
        check_cost(kind, params)  # refuse an over-cap job now, not after it was queued

        def run_job(progress, cancel):
            return work(kinds[kind], state, params, progress, cancel=cancel)()

        job = jobs.submit(kind, run_job, error_response)
        return JSONResponse(job.as_dict(), status_code=202)

    async def jobs_get(request: Request) -> Response:
        job = jobs.get(request.path_params["job_id"])
        if job is None:
            raise RequestError("no such job (finished jobs are kept for the last 200 requests)", 404)
        return JSONResponse(job.as_dict())

    async def jobs_delete(request: Request) -> Response:
        job = jobs.cancel(request.path_params["job_id"])
        if job is None:
            raise RequestError("no such job (finished jobs are kept for the last 200 requests)", 404)
        return JSONResponse(job.as_dict())

    async def vision_get(request: Request) -> Response:
        return JSONResponse(vision.describe())

    async def vision_upload(request: Request) -> tuple[Any, dict[str, Any]]:
        options = vision.options(request.query_params)  # a bad option is refused before the body is read
        upload = vision.check(await request.body(), request.headers.get("content-type", ""), options["name"])
        return upload, options

    async def vision_post(request: Request) -> Response:
        upload, options = await vision_upload(request)

        def progress(fraction: float, message: str) -> None:  # stop between phases when the server stops
            if jobs.stopping.is_set():
                raise Cancelled("the server is shutting down")

        return JSONResponse(await run_in_threadpool(vision.analyse, upload, options, progress))

    async def vision_job(request: Request) -> Response:
        upload, options = await vision_upload(request)
        await run_in_threadpool(vision.models)  # no vision model: 409 now, not from the job
        job = jobs.submit(
            "vision", lambda progress, cancel: vision.analyse(upload, options, progress), error_response
        )
        return JSONResponse(job.as_dict(), status_code=202)

    async def saes_get(request: Request) -> Response:
        return JSONResponse({"saes": [C.sae_summary(s) for s in state.saes.values()]})

    async def sae_latent(request: Request) -> Response:
        name, latent = request.path_params["name"], request.path_params["latent"]
        return JSONResponse(await run_in_threadpool(work(C.sae_latent, state, name, latent)))

    async def sae_search(request: Request) -> Response:
        name, token = request.path_params["name"], request.query_params.get("token")
        return JSONResponse(await run_in_threadpool(work(C.sae_search, state, name, token)))

    async def not_found(request: Request) -> Response:
        return _err(404, f"no endpoint {request.method} {request.url.path}; see docs/serve.md")

    routes = [
        Route("/", endpoint(index)),
        Route("/static/{path:path}", endpoint(static_file)),
        Route("/api/info", endpoint(info)),
        Route("/api/sites", endpoint(sites)),
        *[Route(f"/api/{kind}", compute(kind), methods=["POST"]) for kind in kinds if kind != "sae_prepare"],
        Route("/api/vision", endpoint(vision_get), methods=["GET"]),
        Route("/api/vision", endpoint(vision_post), methods=["POST"]),
        Route("/api/vision/job", endpoint(vision_job), methods=["POST"]),
        Route("/api/vectors", endpoint(vectors_get), methods=["GET"]),
        Route("/api/vectors", endpoint(vectors_post), methods=["POST"]),
        Route("/api/jobs", endpoint(jobs_post), methods=["POST"]),
        Route("/api/jobs/{job_id}", endpoint(jobs_get), methods=["GET"]),
        Route("/api/jobs/{job_id}", endpoint(jobs_delete), methods=["DELETE"]),
        Route("/api/saes", endpoint(saes_get)),
        Route("/api/saes/{name}/latents/{latent:int}", endpoint(sae_latent)),
        Route("/api/saes/{name}/search", endpoint(sae_search)),
        Route("/api/{rest:path}", endpoint(not_found), methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]

    async def http_error(request: Request, exc: Any) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = {404: "not found", 405: "method not allowed"}.get(status, getattr(exc, "detail", "error"))
        return _err(status, f"{detail}: {request.method} {request.url.path}")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        jobs.shutdown()

    app = Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error}, lifespan=lifespan)
    app.state.tsi = state
    app.state.jobs = jobs
    app.state.vision = vision
    uploads = {path: (max_image_bytes, size_hint(max_image_bytes)) for path in UPLOAD_PATHS}
    app.add_middleware(Guard, max_body=max_body, allowed_hosts=allowed_hosts, token=token, uploads=uploads)
    return app


_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _json_depth(raw: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in a JSON text, brackets inside strings not counted."""
    depth = deepest = 0
    in_str = escaped = False
    for b in raw:
        if in_str:
            if escaped:
                escaped = False
            elif b == 0x5C:  # backslash
                escaped = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _enable_attention(model: Model) -> tuple[bool, str]:
    impl = model.attention
    if impl in (None, "eager"):
        return True, "attention patterns are read from the model's eager attention"
    if not hasattr(model.module, "set_attn_implementation"):
        return False, f"this model uses {impl!r} attention and cannot be switched to eager here"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.set_attention("eager")
    return True, f"switched from {impl!r} to eager attention at start-up (slower, exposes the patterns)"


def _named(items: Mapping[str, Any] | Iterable[Any] | None) -> dict[str, Any]:
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, (str, Path)):
            name = Path(str(item)).name
        elif isinstance(getattr(item, "name", None), str):
            name = item.name
        elif isinstance(getattr(item, "path", None), (str, Path)):  # an opened store: its folder's name
            name = Path(str(item.path)).name
        else:
            name = f"item{len(out)}"
        base, i = name, 2
        while name in out:
            name, i = f"{base}-{i}", i + 1
        out[name] = item
    return out


def _saes(saes: Any) -> dict[str, ServedSAE]:
    out = {}
    for name, item in _named(saes).items():
        out[name] = item if isinstance(item, ServedSAE) else load_sae(item, name)
    return out


def _vectors(vectors: Any) -> dict[str, Any]:
    from ..steering import SteeringVector

    if isinstance(vectors, (str, Path)):
        vectors = [vectors]
    out: dict[str, Any] = {}
    items: dict[str, Any] = {}
    if isinstance(vectors, Mapping):
        items = dict(vectors)
    elif vectors is not None:
        for v in vectors:
            p = Path(v)
            files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p]
            for f in files:
                items[f.stem] = f
    for name, item in items.items():
        out[name] = item if isinstance(item, SteeringVector) else SteeringVector.load(item)
    return out


def _stores(stores: Any) -> dict[str, Any]:
    out = {}
    for name, item in _named(stores).items():
        if isinstance(item, (str, Path)):
            try:
                from .. import store as tsi_store
            except ImportError:
                raise OSError(
                    "--store needs the tsi.store package (activation stores), which is not installed here"
                ) from None
            item = tsi_store.open(str(item))
        out[name] = item
    return out


def _store_corpus(
    stores: Mapping[str, Any], max_tokens: int = 8192, context: int = 64
) -> tuple[tuple[Any, ...], str]:
    """Token-id chunks ``[1, context]`` from the first store, as the SAE browser's corpus."""
    name, store = next(iter(stores.items()))
    n = min(len(store), max_tokens)
    ids = store.tokens(0, n).reshape(-1).long()
    ctx = int(getattr(store, "context", None) or context)
    chunks = tuple(ids[i : i + ctx].unsqueeze(0) for i in range(0, n, ctx) if ids[i : i + ctx].numel() > 1)
    return chunks, f"store {name!r} ({n} tokens)"
