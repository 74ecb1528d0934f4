"""A judged query set for query understanding on the demo catalog, written by rules (never by hand),
with a TUNING and a HELD-OUT split that share no combination, brand pair, product or template.

Kinds (relevance judged from the catalog's own fields):
- name: a made-up product ("Zorblax quantum kettle in teal", `new_products`, upserted by the bench)
  asked by its made-up name alone and by its full title; relevant: that product;
- sku: a product's SKU as typed ("TS-00042-RD") or lower-case with spaces ("ts 00042 rd");
- brand: brand + type ("Kestrel backpack"); relevant: that brand and category;
- attributes: the combination's plain phrase ("red striped t-shirt"); relevant: that combination;
- descriptive: words a shopper uses instead of the catalog's ("a cup for my morning coffee in
  blue"); relevant: that category and colour;
- chinese: the combination's Chinese phrase ("红色条纹T恤"); relevant: that combination;
- negated: a category with a colour or pattern excluded ("dress not red", "连衣裙不要红色");
  relevant: that category without the excluded value (the query's `excluded` says which);
- misspelt: "colour category" with one typo in a word of 4+ letters.
Each query: {"kind", "text", "relevant": product ids, "excluded": {field: value} (negated only),
"positive": the query without its negation (negated only)}.
"""
from __future__ import annotations

import random

from productsearch.demo.attributes import canonical_query
from productsearch.demo.chinese import CATEGORY_ZH, COLOR_ZH, PATTERN_ZH, canonical_query_zh

KINDS = ("name", "sku", "brand", "attributes", "descriptive", "chinese", "negated", "misspelt")
SPLITS = ("tuning", "held-out")
# words for a category that are not the catalog's own
DESCRIBED = {
    "t-shirt": ("a casual top to wear", "a short-sleeved top"), "dress": ("something to wear to a party",
                                                                          "a frock for summer evenings"),
    "jeans": ("denim trousers", "denim pants for every day"), "sneakers": ("shoes for running",
                                                                          "trainers for the gym"),
    "handbag": ("a purse to carry", "a tote for evenings out"), "backpack": ("a bag for school and a laptop",
                                                                            "a rucksack for hiking"),
    "hat": ("something to cover my head", "a cap against the sun"), "sunglasses": ("shades for the beach",
                                                                                  "eyewear against the sun"),
    "watch": ("a timepiece for my wrist", "a wristwatch"), "mug": ("a cup for my morning coffee",
                                                                    "a cup for tea"),
    "lipstick": ("colour for my lips", "a lip colour"), "water bottle": ("a flask to carry drinks",
                                                                        "something to drink from on a hike"),
}
DESCRIPTIVE_TEMPLATES = {"tuning": ("{thing} in {color}", "{color} {thing}"),
                         "held-out": ("I need {thing}, {color} please", "looking for {thing} that is {color}")}
NEGATED_TEMPLATES = {  # (template, which field it excludes)
    "tuning": (("{category} not {color}", "color"), ("{category} -{color}", "color"),
               ("{category} without {pattern_noun}", "pattern"), ("{category_zh}不要{color_zh}", "color")),
    "held-out": (("{category} no {pattern_noun}", "pattern"), ("{category} without {color}", "color"),
                 ("非{color_zh}的{category_zh}", "color"), ("除了{color_zh}以外的{category_zh}", "color")),
}
PATTERN_NOUN = {"striped": "stripes", "polka-dot": "polka-dots", "checked": "checks", "plain": "plain"}
NAME_SYLLABLES = ("zor", "blax", "quin", "vel", "trox", "mira", "dak", "fen", "lux", "orb", "pim", "zek", "yon",
                  "grav", "thim", "wex")
NAME_ADJECTIVES = ("quantum", "velvet", "turbo", "arctic", "lunar", "copper", "nimbus", "cobalt")
NAME_NOUNS = ("kettle", "lamp", "blender", "speaker", "toaster", "headphones", "umbrella", "notebook")
NAME_COLORS = ("teal", "amber", "ivory", "crimson", "olive", "indigo")
NAMES_PER_SPLIT = 20


def misspelt(query: str, rng: random.Random) -> str:
    """One typo in a word of 4+ letters: a letter dropped, doubled or swapped (seeded)."""
    words = query.split()
    long = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not long:
        return query
    i = rng.choice(long)
    word, at = words[i], rng.randrange(1, len(words[i]) - 1)
    kind = rng.choice(("drop", "double", "swap"))
    words[i] = (word[:at] + word[at + 1:] if kind == "drop" else word[:at] + word[at] + word[at:] if kind == "double"
                else word[:at] + word[at + 1] + word[at] + word[at + 2:])
    return " ".join(words)


def new_products(seed: int = 0) -> list[dict]:
    """Made-up products, each with a unique made-up name: {"id", "title", "name", "split"}."""
    rng = random.Random(f"names:{seed}")
    names: set[str] = set()
    out = []
    while len(out) < 2 * NAMES_PER_SPLIT:
        name = "".join(rng.sample(NAME_SYLLABLES, 2)).capitalize()
        if name in names:
            continue
        names.add(name)
        title = f"{name} {rng.choice(NAME_ADJECTIVES)} {rng.choice(NAME_NOUNS)} in {rng.choice(NAME_COLORS)}"
        out.append({"id": f"N{len(out):04d}", "title": title, "name": name, "split": SPLITS[len(out) % 2]})
    return out


def judged_queries(records: dict[str, dict], seed: int = 0) -> dict[str, list[dict]]:
    """{split: [query]} over the demo catalog `records` (id -> record) and `new_products(seed)`."""
    rng = random.Random(f"judged:{seed}")
    combo = lambda r: (r["category"], r["color"], r["pattern"])  # noqa: E731
    by_combo: dict[tuple, list[str]] = {}
    for pid, r in sorted(records.items()):
        by_combo.setdefault(combo(r), []).append(pid)
    heldout = sorted({combo(r) for r in records.values() if r.get("heldout")})
    training = sorted(set(by_combo) - set(heldout))
    rng.shuffle(training)
    combos = {"tuning": training[: len(heldout)], "held-out": heldout}
    ids = lambda test: sorted(pid for pid, r in records.items() if test(r))  # noqa: E731
    out: dict[str, list[dict]] = {}
    for split in SPLITS:
        queries = []
        for i, c in enumerate(combos[split]):
            category, color, pattern = c
            exact = by_combo[c]
            pair = ids(lambda r, c=c: (r["category"], r["color"]) == c[:2])
            queries.append({"kind": "attributes", "text": canonical_query(*c), "relevant": exact})
            queries.append({"kind": "chinese", "text": canonical_query_zh(*c), "relevant": exact})
            queries.append({"kind": "misspelt", "text": misspelt(f"{color} {category}", rng), "relevant": pair})
            thing = DESCRIBED[category][i % 2]
            template = DESCRIPTIVE_TEMPLATES[split][(i // 2) % 2]
            queries.append({"kind": "descriptive", "text": template.format(thing=thing, color=color), "relevant": pair})
            template, excluded_field = NEGATED_TEMPLATES[split][i % len(NEGATED_TEMPLATES[split])]
            if excluded_field == "pattern" and pattern == "plain":
                excluded_field, template = "color", NEGATED_TEMPLATES[split][1][0]
            value = color if excluded_field == "color" else pattern
            text = template.format(category=category, color=color, pattern_noun=PATTERN_NOUN[pattern],
                                   category_zh=CATEGORY_ZH[category][0], color_zh=COLOR_ZH[color][0])
            positive = CATEGORY_ZH[category][0] if any("\u4e00" <= ch <= "\u9fff" for ch in text) else category
            queries.append({"kind": "negated", "text": text, "positive": positive, "excluded": {excluded_field: value},
                            "relevant": ids(lambda r, f=excluded_field, v=value, k=category: r["category"] == k
                                            and r[f] != v)})
        skus = sorted(pid for pid, r in records.items() if bool(r.get("heldout")) == (split == "held-out") and r.get("sku"))
        for pid in rng.sample(skus, min(50, len(skus))):
            sku = records[pid]["sku"]
            queries.append({"kind": "sku", "text": sku if rng.random() < 0.5 else sku.lower().replace("-", " "),
                            "relevant": [pid]})
        brands = sorted({r["brand"] for r in records.values() if r.get("brand")})
        categories = sorted({r["category"] for r in records.values()})
        pairs = [(b, k) for b in brands for k in categories][(0 if split == "tuning" else 1)::2]
        for j, (brand, category) in enumerate(pairs):
            text = f"{brand} {category}" if split == "tuning" or j % 2 else f"{category} from {brand}"
            queries.append({"kind": "brand", "text": text,
                            "relevant": ids(lambda r, b=brand, k=category: r.get("brand") == b and r["category"] == k)})
        for product in new_products(seed):
            if product["split"] == split:
                queries.append({"kind": "name", "text": product["name"], "relevant": [product["id"]]})
                queries.append({"kind": "name", "text": product["title"], "relevant": [product["id"]]})
        out[split] = queries
    return out
