"""Chinese titles and descriptions for the demo catalog, so about a third of its products are
served in Chinese (the bilingual demo): the same (category, colour, pattern) keys as
demo/catalog.py, one or more Chinese surface forms per key (the FIRST is canonical: what
`canonical_query_zh` uses), and title / description templates with varied wording. Titles are
written without spaces between words, as on Chinese shops ("红色条纹纯棉T恤").

The Chinese text is drawn from a SEPARATE rng per product (`zh:{seed}:{combination}:{render}`)
and the language pick is a seeded hash of the same key, so neither the pixels nor the English
text of any product changes, and a product keeps its language when the catalog around it does.
"""
from __future__ import annotations

import hashlib
import random

from productsearch.demo.attributes import BRANDS  # the same brands in both languages

ZH_FRACTION = 1 / 3  # share of the demo products served in Chinese

# key -> surface forms; forms[0] is canonical
CATEGORY_ZH = {
    "t-shirt": ("T恤", "短袖T恤", "T恤衫"),
    "dress": ("连衣裙", "裙子", "连身裙"),
    "jeans": ("牛仔裤", "牛仔长裤", "直筒牛仔裤"),
    "sneakers": ("运动鞋", "休闲运动鞋", "球鞋"),
    "handbag": ("手提包", "手袋", "女士手提包"),
    "backpack": ("双肩包", "背包", "双肩背包"),
    "hat": ("帽子", "宽檐帽", "遮阳帽"),
    "sunglasses": ("太阳镜", "墨镜", "太阳眼镜"),
    "watch": ("手表", "腕表", "石英手表"),
    "mug": ("马克杯", "咖啡杯", "陶瓷马克杯"),
    "lipstick": ("口红", "唇膏", "口红唇膏"),
    "water bottle": ("水杯", "水瓶", "运动水壶", "保温杯"),
}
COLOR_ZH = {
    "red": ("红色", "红"), "orange": ("橙色", "橘色"), "yellow": ("黄色", "黄"),
    "green": ("绿色", "绿"), "blue": ("蓝色", "蓝"), "purple": ("紫色", "紫"),
    "pink": ("粉色", "粉红色"), "brown": ("棕色", "咖啡色"), "black": ("黑色", "黑"),
    "white": ("白色", "白"), "grey": ("灰色", "灰"),
}
# adjective forms written before the noun ("条纹T恤"); plain may be left unsaid ("")
PATTERN_ZH = {
    "plain": ("纯色", "素色", ""), "striped": ("条纹",),
    "polka-dot": ("波点", "圆点"), "checked": ("格子", "格纹"),
}
# phrase forms written after the noun ("T恤，条纹图案")
PATTERN_WITH_ZH = {
    "plain": ("", "，纯色设计"), "striped": ("，条纹图案", "，经典条纹"),
    "polka-dot": ("，波点图案", "，圆点印花"), "checked": ("，格子图案", "，格纹设计"),
}
MATERIAL_ZH = {
    "t-shirt": ("纯棉", "有机棉", "针织"), "dress": ("亚麻", "雪纺", "纯棉"),
    "jeans": ("牛仔布", "弹力牛仔"), "sneakers": ("帆布", "真皮", "网面"),
    "handbag": ("真皮", "纯素皮革", "麂皮"), "backpack": ("尼龙", "帆布"),
    "hat": ("羊毛", "毛毡", "草编"), "sunglasses": ("板材", "再生板材"),
    "watch": ("不锈钢", "钛合金"), "mug": ("陶瓷", "粗陶", "骨瓷"),
    "lipstick": ("哑光", "缎光", "滋润"), "water bottle": ("不锈钢", "双层不锈钢"),
}
USE_ZH = {  # selling point, a clause that can follow a comma
    "t-shirt": "宽松舒适的日常版型", "dress": "轻盈透气，适合夏日穿着",
    "jeans": "经典五袋款，穿着舒适", "sneakers": "缓震鞋底，适合全天行走",
    "handbag": "容量充足，装得下日常随身物品", "backpack": "内置加厚电脑隔层",
    "hat": "经典帽檐，有效遮阳", "sunglasses": "UV400防紫外线镜片",
    "watch": "表盘清晰，表带佩戴舒适", "mug": "350毫升大容量",
    "lipstick": "持久显色", "water bottle": "双层杯壁，长效保冷",
}

TITLE_TEMPLATES_ZH = (
    "{color}{adj}{cat}",                 # 红色条纹T恤
    "{brand} {color}{adj}{cat}",         # Nordia 红色条纹T恤
    "{adj}{material}{cat} {color}",      # 条纹纯棉T恤 红色
    "经典{color}{cat}{with}",            # 经典红色T恤，条纹图案
    "{material}{cat}（{color}{adj}款）",  # 纯棉T恤（红色条纹款）
    "日常百搭{adj}{cat} {color}",         # 日常百搭条纹T恤 红色
    "新款{color}{adj}{cat}",             # 新款红色条纹T恤
)
DESCRIPTION_TEMPLATES_ZH = (
    "这款{cat}为{color}{with}。{material}材质，{use}。",
    "{color}{adj}{cat}，{use}，来自{brand}系列。",
    "{brand}{material}{cat}，{color}{with}。{use}。",
    "一款{color}的{adj}{cat}：{use}。",
)


def _fill_zh(template: str, category: str, color: str, pattern: str, rng: random.Random,
             short_colors: bool = True) -> str:
    adj_forms, with_forms = PATTERN_ZH, PATTERN_WITH_ZH
    values = {
        "cat": rng.choice(CATEGORY_ZH[category]),
        # one-character colours ("红T恤") suit titles; full sentences read better with "红色"
        "color": rng.choice(COLOR_ZH[color]) if short_colors else COLOR_ZH[color][0],
        "adj": rng.choice(adj_forms[pattern]),
        "with": rng.choice(with_forms[pattern]),
        "material": rng.choice(MATERIAL_ZH[category]),
        "brand": rng.choice(BRANDS),
        "use": USE_ZH[category],
    }
    return " ".join(template.format(**values).split())


def make_title_zh(category: str, color: str, pattern: str, rng: random.Random) -> str:
    """A varied Chinese title containing a category form and a colour form."""
    return _fill_zh(rng.choice(TITLE_TEMPLATES_ZH), category, color, pattern, rng)


def make_description_zh(category: str, color: str, pattern: str, rng: random.Random) -> str:
    """A one-to-two sentence Chinese description, also written from the attributes."""
    return _fill_zh(rng.choice(DESCRIPTION_TEMPLATES_ZH), category, color, pattern, rng, short_colors=False)


def canonical_query_zh(category: str, color: str, pattern: str) -> str:
    """The plain phrase a Chinese shopper would type: '红色条纹T恤', '红色纯色T恤'."""
    return f"{COLOR_ZH[color][0]}{PATTERN_ZH[pattern][0]}{CATEGORY_ZH[category][0]}"


def render_index(product: dict, renders_per_combo: int = 10) -> int:
    """A product's render index within its combination (demo ids are P00001.. in combo order)."""
    return (int(product["id"][1:]) - 1) % renders_per_combo


def zh_fields(product: dict, seed: int = 0) -> dict:
    """`title_zh` and `description_zh` for one catalog product, from its own zh rng."""
    render = render_index(product)
    key = f"zh:{seed}:{product['category']}:{product['color']}:{product['pattern']}:{render}"
    rng = random.Random(key)
    c = (product["category"], product["color"], product["pattern"])
    return {"title_zh": make_title_zh(*c, rng), "description_zh": make_description_zh(*c, rng)}



def is_chinese(product: dict, seed: int = 0, fraction: float = ZH_FRACTION) -> bool:
    """Deterministic per-product language pick: a seeded SHA-256 of the product's
    (combination, render) key, mapped to [0, 1), below `fraction` -> Chinese.

    It depends on nothing else (not on the catalog's size or order, not on Python's hash seed),
    so a product keeps its language when the catalog around it changes. Over the demo catalog
    it picks 1,736 of 5,280 products (32.9%) with seed 0, and 176 of the 530 held-out products.
    """
    key = f"lang:{seed}:{product['category']}:{product['color']}:{product['pattern']}:{render_index(product)}"
    u = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    return u < fraction


def mixed_language_catalog(catalog: list[dict], seed: int = 0, fraction: float = ZH_FRACTION) -> list[dict]:
    """Copies of the products where `title` / `description` are the SERVED text: Chinese for the
    products `is_chinese` picks, English for the others. Each product also keeps both versions
    (`title_en`, `description_en`, `title_zh`, `description_zh`) and gets `lang` ("en" | "zh").
    Pixels, ids, prices and the English text of every product are unchanged; a product that
    already has `title_en` (a catalog mixed before) starts again from its English text."""
    out = []
    for p in catalog:
        p = {**p, "title": p.get("title_en", p["title"]), "description": p.get("description_en", p["description"])}
        zh = zh_fields(p, seed)
        lang = "zh" if is_chinese(p, seed, fraction) else "en"
        q = {**p, "title_en": p["title"], "description_en": p["description"], **zh, "lang": lang}
        if lang == "zh":
            q["title"], q["description"] = zh["title_zh"], zh["description_zh"]
        out.append(q)
    return out
