"""The console's web app: sign-in, the Search, Compare, Catalog and Status pages, and the photos.

Every page reads the service through the signed-in operator's clients (sessions.py); a refusal
or an outage shows the service's message on the page, never a trace. gRPC calls block, so they
run in the thread pool, never on the event loop."""
from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from clients.connection import ServiceError
from productsearch.console.arms import arm_queries, experiment_view
from productsearch.console.catalog_page import catalog_page
from productsearch.console.compare import movements, overlap_at
from productsearch.console.photos import ProductPhotos
from productsearch.console.queries import FACETS, Query, number, run
from productsearch.console.records import ProductRecords
from productsearch.console.sessions import COOKIE, Session, SessionStore
from productsearch.console.status import service_status

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
MAX_UPLOAD = 32 * 1024 * 1024  # far above the service's own image limit: the service judges, the console only bounds memory


def problem(err: Exception) -> str:
    """The words a page shows for a failed call: the service's message, or what went wrong on the way."""
    if isinstance(err, ServiceError):
        return f"{err.status.removeprefix('StatusCode.')}: {err.message}"
    return f"the service could not be reached ({type(err).__name__}: {str(err)[:200]})"


class Console:
    """The app's state: the service's address, the sessions and the product photos."""

    def __init__(self, url: str, catalogs: list[Path] | None = None, timeout_s: float = 10.0):
        self.sessions = SessionStore(url, timeout_s)
        self.photos = ProductPhotos(catalogs)
        self.records = ProductRecords()
        self.url = url

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def page(self, request: Request, name: str, session: Session | None, **context) -> Response:
        status = 400 if context.get("error") else 200
        return templates.TemplateResponse(request, name, {"session": session, "page": name.split(".")[0], **context},
                                          status_code=status)

    async def form(self, request: Request):
        return await request.form(max_part_size=MAX_UPLOAD) if request.method == "POST" else request.query_params

    # --- sign-in ---------------------------------------------------------------------------
    async def signin(self, request: Request) -> Response:
        if request.method == "GET":
            return self.page(request, "signin.html", None)
        form = await request.form()
        key, shop = (form.get("key") or "").strip(), (form.get("shop") or "").strip() or None
        if not key:
            return self.page(request, "signin.html", None, error="enter an API key", shop=shop)
        client = self.sessions.client(key)
        try:
            await run_in_threadpool(client.info, shop)  # the service judges the key (search scope on the shop)
        except Exception as err:  # noqa: BLE001 - shown to the operator
            client.close()
            return self.page(request, "signin.html", None, error=problem(err), shop=shop)
        token = self.sessions.open(client, shop, key)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    async def signout(self, request: Request) -> Response:
        self.sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # --- pages -----------------------------------------------------------------------------
    async def search(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", status_code=303)
        form = await self.form(request)
        photo, ref = None, form.get("photo_ref") or ""
        upload = form.get("photo") if request.method == "POST" else None
        if upload is not None and hasattr(upload, "read"):
            data = await upload.read()
            if data:
                ref = session.keep_photo(data, upload.content_type or "application/octet-stream")
        if form.get("clear_photo"):
            ref = ""
        if ref in session.photos:
            photo = session.photos[ref][0]
        else:
            ref = ""
        query = Query.from_form(form, photo, ref)
        context = {"query": query, "facet_names": FACETS}
        if query.text or query.photo or query.like or form.get("go"):
            try:
                answer = await run_in_threadpool(run, session.client, query, session.shop)
                records = await run_in_threadpool(self.records.records, session.client, session.shop, answer.result.ids,
                                                  answer.result.catalog_sequence)
                context.update(answer=answer, records=records)
            except Exception as err:  # noqa: BLE001 - shown to the operator
                session.note_error("search", problem(err))
                context["error"] = problem(err)
        return self.page(request, "search.html", session, **context)

    async def compare(self, request: Request) -> Response:
        """Two settings side by side, or, while the shop runs an experiment, its control and
        treatment arms (the default then), with overlap@10 and what moved."""
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", status_code=303)
        form = await self.form(request)
        text = (form.get("q") or "").strip()
        settings = {side: {"lexical_weight": number(form.get(f"lexical_{side}"), default),
                           "hybrid_mode": form.get(f"mode_{side}") or "weighted"}
                    for side, default in (("a", 0.0), ("b", 0.5))}
        experiment = await run_in_threadpool(experiment_view, session.client, session.shop, problem)
        against = "arms" if experiment.running and form.get("against", "arms") == "arms" else "settings"
        context = {"text": text, "settings": settings, "experiment": experiment, "against": against}
        if text:
            queries = arm_queries(text, experiment) if against == "arms" else {
                side: Query(text=text, lexical_weight=setting["lexical_weight"], hybrid_mode=setting["hybrid_mode"])
                for side, setting in settings.items()}
            try:
                answers = {side: await run_in_threadpool(run, session.client, query, session.shop, 10)
                           for side, query in queries.items()}
                a, b = (list(zip(answers[s].result.ids, answers[s].result.titles)) for s in ("a", "b"))
                context.update(answers=answers, overlap=overlap_at([p for p, _ in a], [p for p, _ in b]),
                               moved=movements(a, b))
            except Exception as err:  # noqa: BLE001 - shown to the operator
                session.note_error("compare", problem(err))
                context["error"] = problem(err)
        return self.page(request, "compare.html", session, **context)

    async def catalog(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", status_code=303)
        form = await self.form(request)
        context = await catalog_page(session, self.photos, form, problem)
        return self.page(request, "catalog.html", session, **context)

    async def status(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return RedirectResponse("/signin", status_code=303)
        context = await run_in_threadpool(service_status, session, problem)
        return self.page(request, "status.html", session, **context)

    # --- photos ----------------------------------------------------------------------------
    async def query_photo(self, request: Request) -> Response:
        session = self.session(request)
        kept = session.photos.get(request.path_params["ref"]) if session else None
        if kept is None:
            return Response(status_code=404)
        return Response(kept[0], media_type=kept[1], headers={"cache-control": "private, no-store"})

    async def product_photo(self, request: Request) -> Response:
        session = self.session(request)
        if session is None:
            return Response(status_code=403)
        data, kind = self.photos.photo(session.shop, request.path_params["pid"])
        return Response(data, media_type=kind, headers={"cache-control": "private, max-age=60"})


def create_app(url: str, catalogs: list[Path] | None = None, timeout_s: float = 10.0) -> Starlette:
    """The console app for the service at `url` (host:grpc_port); `catalogs`: JSONL files whose
    `image` paths are the default shop's product photos."""
    console = Console(url, catalogs, timeout_s)
    routes = [Route("/", console.search, methods=["GET", "POST"]),
              Route("/signin", console.signin, methods=["GET", "POST"]),
              Route("/signout", console.signout, methods=["POST"]),
              Route("/compare", console.compare, methods=["GET", "POST"]),
              Route("/catalog", console.catalog, methods=["GET", "POST"]),
              Route("/status", console.status),
              Route("/photo/{ref}", console.query_photo),
              Route("/image/{pid}", console.product_photo),
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes)
    app.state.console = console
    return app
