"""The Catalog page (a write-scope key): find a product by id, edit its fields, give it a new
photo, delete it; each change shows the SEQUENCE the service returned and the next search
(the product's title, read at that sequence), so the operator sees the change land."""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from clients.catalog import parse_assignments
from clients.contract import Product
from productsearch.console.photos import ProductPhotos
from productsearch.console.queries import Query, run
from productsearch.console.sessions import Session

FIELD_PREFIX = "field."


def changed_fields(form, record: dict) -> dict:
    """name=value of each edited field (a value that parses as JSON is taken as such; blank: removed)."""
    pairs = [f"{name[len(FIELD_PREFIX):]}={value}" for name, value in form.multi_items()
             if name.startswith(FIELD_PREFIX) and isinstance(value, str)]
    if form.get("new_name"):
        pairs.append(f"{form.get('new_name')}={form.get('new_value') or ''}")
    edited = parse_assignments(pairs)
    old = record.get("fields", {})
    return {name: (None if value == "" else value) for name, value in edited.items() if old.get(name) != value
            and not (value == "" and name not in old)}


def write(session: Session, photos: ProductPhotos, action: str, pid: str, form, record: dict | None, upload: bytes):
    """The write the form asks for; (what was done, its SEQUENCE)."""
    client, shop = session.client, session.shop
    if record is None:
        raise ValueError(f"no product {pid!r} in this shop")
    if action == "save":
        changes = changed_fields(form, record)
        if not changes:
            return "nothing changed", None
        return f"set {', '.join(sorted(changes))}", client.update_fields({pid: changes}, shop)[0]
    if action == "photo":
        if not upload:
            raise ValueError("choose a photo to upload")
        sequence = client.upsert([Product(pid, record["title"], upload, record.get("fields"))], shop)[0]
        photos.uploaded(shop, pid, upload)
        return "new photo", sequence
    if action == "delete":
        sequence = client.delete([pid], shop)[0]
        photos.forget(shop, pid)
        return "deleted", sequence
    raise ValueError(f"unknown action {action!r}")


async def catalog_page(session: Session, photos: ProductPhotos, form, problem) -> dict:
    """The page's context: the product, the write's outcome and the next search."""
    pid = (form.get("id") or "").strip()
    action = form.get("action") or ""
    context = {"pid": pid}
    if not pid:
        return context
    upload = form.get("photo")
    data = await upload.read() if hasattr(upload, "read") else b""
    try:
        record = await run_in_threadpool(session.client.product, pid, session.shop)
        if action:
            done, sequence = await run_in_threadpool(write, session, photos, action, pid, form, record, data)
            context.update(done=done, sequence=sequence)
            if sequence is not None:
                title = record["title"]
                record = await run_in_threadpool(session.client.product, pid, session.shop)
                answer = await run_in_threadpool(run, session.client, Query(text=title, min_sequence=sequence), session.shop, 12)
                context.update(next_search=answer, next_title=title)
        context["record"] = record
        if record is None and not action:
            context["error"] = f"no product {pid!r} in this shop"
    except Exception as err:  # noqa: BLE001 - shown to the operator
        session.note_error("catalog", problem(err) if not isinstance(err, ValueError) else str(err))
        context["error"] = problem(err) if not isinstance(err, ValueError) else str(err)
    return context
