"""How the catalog is laid out in Milvus: the URL, the collections, their fields and indexes, and the
lexical analysis carried into Milvus's BM25.

    milvus://host:19530[?images=/srv/catalog-images&index=FLAT&nlist=1024&prefix=productsearch]
    milvus+lite:///abs/dir[?...]     an embedded milvus-lite database in that folder (one process)

Collections: `<prefix>_g<N>` per generation N (every shop in it, `shop` the partition key and
the primary key "shop/id", so a shop's query is pruned to its partitions and two shops may use
the same product ids), the alias `<prefix>_live` on the generation that takes writes (moved
atomically by a swap), and `<prefix>_meta` (shops, write fence, closed lists, rules, fusion
weights). Business fields are typed scalar columns (t_* strings, n_* numbers) with scalar
indexes, so filters run inside Milvus; the whole record stays in `fields` (JSON).
Lexical: the same analysis as the embedded store (catalog/ranking/lexical.py: words, product codes,
trigrams of Latin words, CJK bigrams) feeds two BM25 fields, `words` and `grams`. Each term is
written as a hash token ("x" + 16 hex digits) so that no Milvus analyzer can split a Chinese
bigram or a compacted code again: Milvus's BM25 then sees exactly our terms.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

from productsearch.catalog.ranking.lexical import (CJK_RUN, LATIN_WORD, STOPWORDS, TOKEN, compact, document, first_distinct,
                                                   grams_of, iter_grams)
from productsearch.catalog.records import NUMBER_FIELDS, TERM_FIELDS
from productsearch.catalog.rows import StoreError
from productsearch.core.limits import MAX_TEXT_BYTES

INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "DISKANN", "GPU_CAGRA", "AUTOINDEX")  # milvus-lite: FLAT, IVF_*, HNSW
MAX_TERMS_CHARS = 65_535  # Milvus VARCHAR limit: a document's terms beyond it are not indexed
MAX_QUERY_TERMS = 64
TITLE_MAX = MAX_TEXT_BYTES  # bytes of UTF-8, as records.py checks them


@dataclass
class MilvusUrl:
    uri: str  # what MilvusClient takes: http://host:port, or a local milvus-lite path
    images: str | None = None
    index: str = "FLAT"
    nlist: int = 1024
    prefix: str = "productsearch"
    extra: dict = field(default_factory=dict)

    def collection(self, generation: int) -> str:
        return f"{self.prefix}_g{int(generation)}"

    @property
    def alias(self) -> str:
        return f"{self.prefix}_live"

    @property
    def meta(self) -> str:
        return f"{self.prefix}_meta"


def parse_url(url: str) -> MilvusUrl:
    parsed = urlparse(url)
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    if parsed.scheme == "milvus":
        if not parsed.hostname:
            raise StoreError(f"catalog URL {url!r} needs a host: milvus://host:19530")
        uri = f"http://{parsed.hostname}:{parsed.port or 19530}"
    elif parsed.scheme == "milvus+lite":
        if not parsed.path.startswith("/"):
            raise StoreError(f"catalog URL {url!r} needs an absolute folder: milvus+lite:///abs/dir")
        uri = parsed.path.rstrip("/") + "/milvus.db"
    else:
        raise StoreError(f"not a Milvus catalog URL: {url!r}")
    index = options.pop("index", "FLAT").upper()
    if index not in INDEX_TYPES:
        raise StoreError(f"catalog URL {url!r}: index must be one of {', '.join(INDEX_TYPES)}, not {index!r}")
    prefix = options.pop("prefix", "productsearch")
    if not prefix.replace("_", "").isalnum():
        raise StoreError(f"catalog URL {url!r}: prefix must be letters, digits and '_'")
    return MilvusUrl(uri, options.pop("images", None), index, int(options.pop("nlist", "1024")), prefix, options)


def term_token(term: str) -> str:
    return "x" + hashlib.blake2b(term.encode(), digest_size=8).hexdigest()


def fit(tokens: list[str]) -> str:
    text = " ".join(tokens)
    return text if len(text) <= MAX_TERMS_CHARS else text[:MAX_TERMS_CHARS].rsplit(" ", 1)[0]


def document_terms(title: str, fields_json: str) -> tuple[str, str]:
    """(words, grams) of a product as hash tokens, for the two BM25 fields."""
    text, codes = document(title, fields_json)
    words = [t for t in TOKEN.findall(text.casefold())] + [compact(c) for c in codes]
    return fit([term_token(t) for t in words if t]), fit([term_token(g) for g in grams_of(text)])


def query_terms(text: str) -> tuple[str, str]:
    """(words, grams) of a shopper's text as hash tokens: its words and codes; the grams of its
    Latin words (no vocabulary to tell the known ones, as the embedded store does) and Chinese runs."""
    folded = text.casefold()
    words = [t for t in TOKEN.findall(folded) if not CJK_RUN.search(t) and t not in STOPWORDS and (len(t) > 1 or t.isdigit())]
    if len(TOKEN.findall(text)) > 1 and any(c.isdigit() for c in text):
        words.append(compact(text))
    latin = " ".join(LATIN_WORD.findall(folded))
    grams = itertools.chain(iter_grams(latin), iter_grams(" ".join(CJK_RUN.findall(folded)), query=True))
    return (" ".join(term_token(t) for t in first_distinct(words, MAX_QUERY_TERMS)),
            " ".join(term_token(g) for g in first_distinct(grams, MAX_QUERY_TERMS)))


def term_column(name: str) -> str:
    return f"t_{name}"


def number_column(name: str) -> str:
    return f"n_{name}"


def product_schema(client, dim: int):
    """The schema and index parameters of a generation's collection (`dim`: the fused vector)."""
    from pymilvus import DataType, Function, FunctionType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=330)
    schema.add_field("shop", DataType.VARCHAR, max_length=64, is_partition_key=True)
    schema.add_field("id", DataType.VARCHAR, max_length=256)
    schema.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX)
    schema.add_field("fields", DataType.JSON)
    schema.add_field("image_sha", DataType.VARCHAR, max_length=64, nullable=True)
    schema.add_field("has_image", DataType.BOOL)
    schema.add_field("content_seq", DataType.INT64)
    schema.add_field("seq", DataType.INT64)
    schema.add_field("updated_at", DataType.DOUBLE)
    for name in TERM_FIELDS:
        schema.add_field(term_column(name), DataType.VARCHAR, max_length=TITLE_MAX, nullable=True)
    for name in NUMBER_FIELDS:
        schema.add_field(number_column(name), DataType.FLOAT, nullable=True)
    for name in ("words", "grams"):
        schema.add_field(name, DataType.VARCHAR, max_length=MAX_TERMS_CHARS, enable_analyzer=True,
                         analyzer_params={"tokenizer": "standard"})
        schema.add_field(f"{name}_bm25", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name=f"{name}_bm25", function_type=FunctionType.BM25,
                                     input_field_names=[name], output_field_names=[f"{name}_bm25"]))
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    return schema


def product_indexes(client, url: MilvusUrl):
    params = client.prepare_index_params()
    vector_params = {"IVF_FLAT": {"nlist": url.nlist}, "IVF_SQ8": {"nlist": url.nlist}, "HNSW": {"M": 16, "efConstruction": 200},
                     "GPU_CAGRA": {"intermediate_graph_degree": 64, "graph_degree": 32}}.get(url.index, {})
    params.add_index("vector", index_type=url.index, metric_type="IP", params=vector_params)
    for name in ("words", "grams"):
        params.add_index(f"{name}_bm25", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    # scalar indexes on what Milvus filters by (the other fields are read for re-ranking only)
    params.add_index(term_column("category"), index_type="INVERTED")
    for name in ("price", "stock"):
        params.add_index(number_column(name), index_type="INVERTED")
    params.add_index("id", index_type="INVERTED")
    return params


def meta_schema(client):
    """Milvus needs a vector field in every collection: `unused` is a 2-d zero vector."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=200)
    schema.add_field("shop", DataType.VARCHAR, max_length=64)
    schema.add_field("value", DataType.VARCHAR, max_length=65_535)
    schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
    params = client.prepare_index_params()
    params.add_index("unused", index_type="FLAT", metric_type="L2")
    return schema, params


OUTPUT_FIELDS = ["pk", "id", "title", "fields", "image_sha", "has_image", "content_seq", "seq", "updated_at", "vector"]
