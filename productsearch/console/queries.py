"""What the Search and Compare pages ask the service: a page's form read into one search (text,
photo, weight, filters, facets, page, explain), run through the client, and its answer as cards.

Nothing here checks the query the way the service does: an empty query or a photo that is not an
image goes to the service, whose message the page then shows (the service is the one judge)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from clients.contract import Filters, ReadOptions, Relevance, SearchResult
from clients.search import SearchClient

FACETS = ["category", "color", "brand", "in_stock"]
PAGE_SIZE = 12


def number(value, default=None, kind=float):
    """A form field as a number (blank or unreadable: the default)."""
    try:
        return kind(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


@dataclass
class Query:
    """One search as the page's form describes it."""

    text: str = ""
    photo: bytes | None = None
    photo_ref: str = ""
    text_weight: float = 0.5
    categories: list[str] = field(default_factory=list)
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool = False
    page: int = 0
    explain: bool = False
    lexical_weight: float | None = None
    hybrid_mode: str | None = None
    like: str = ""  # "more like this": recommend from this product id
    min_sequence: int = 0
    user: str = ""  # USER: the Compare page runs a query as an experiment arm with one

    @classmethod
    def from_form(cls, form, photo: bytes | None = None, photo_ref: str = "") -> "Query":
        """The Search page's fields; a facet button (facet=field:value) narrows by its value."""
        categories = [c for c in form.getlist("category") if c]
        query = cls(text=(form.get("q") or "").strip(), photo=photo, photo_ref=photo_ref,
                    text_weight=number(form.get("text_weight"), 0.5), categories=categories,
                    price_min=number(form.get("price_min")), price_max=number(form.get("price_max")),
                    in_stock=bool(form.get("in_stock")), page=max(number(form.get("page"), 0, int), 0),
                    explain=bool(form.get("explain")), lexical_weight=number(form.get("lexical_weight")),
                    hybrid_mode=form.get("hybrid_mode") or None, like=(form.get("like") or "").strip(),
                    min_sequence=number(form.get("min_sequence"), 0, int))
        facet = form.get("facet") or ""
        name, _, value = facet.partition(":")
        if name == "category" and value and value not in query.categories:
            query.categories.append(value)
            query.page = 0
        elif name == "in_stock" and value == "true":
            query.in_stock, query.page = True, 0
        return query

    @property
    def mixed(self) -> bool:
        """Both words and a photo: the weight slider applies."""
        return bool(self.text and self.photo)

    def filters(self) -> Filters:
        return Filters(self.categories or None, self.price_min, self.price_max, None, self.in_stock)

    def relevance(self) -> Relevance:
        return Relevance(self.lexical_weight, self.hybrid_mode, facets=FACETS, explain=self.explain)


@dataclass
class Answer:
    """A search's answer for a page: cards, facet counts, the service's sequence and the time."""

    result: SearchResult
    millis: float

    @property
    def cards(self) -> list[dict]:
        notes = self.result.explanations
        return [{"id": pid, "score": score, "title": title, "explain": notes[i] if i < len(notes) else None}
                for i, (pid, score, title) in enumerate(self.result.rows())]

    @property
    def facets(self) -> dict:
        return self.result.facets


def run(client: SearchClient, query: Query, shop: str | None, top_k: int = PAGE_SIZE) -> Answer:
    """The query through the service (ServiceError on a refusal: the caller shows its message)."""
    read = ReadOptions(shop, query.min_sequence)
    start = time.perf_counter()
    if query.like:
        result = client.recommend([query.like], top_k, offset=query.page * top_k, filters=query.filters(), read=read,
                                  relevance=query.relevance(), user=query.user or None)
    else:
        result = client.search(query.text or None, query.photo, top_k, offset=query.page * top_k,
                               text_weight=query.text_weight if query.mixed else None, filters=query.filters(),
                               read=read, relevance=query.relevance(), user=query.user or None)
    return Answer(result, (time.perf_counter() - start) * 1000)
