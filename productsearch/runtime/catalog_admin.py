"""catalog_admin: ACTION with a JSON PAYLOAD -> RESULT JSON, for the catalog CLI
(python -m clients.catalog) and the key CLI (python -m clients.keys).

Catalog actions and the scope they need on the request's SHOP: `create_shop` (admin: the only way
a shop but the default one comes to exist), `info`, `product`, `products` (PAYLOAD {"ids": [...]},
up to MAX_LOOKUP: a results page's records in one call, the unknown ids left out), `rules`, `synonyms`
(search: read-only); `set_closed_values`, `set_rules`, `set_synonyms` (catalog/ranking/synonyms.py: PAYLOAD
{"synonyms": [...]}; returns the SEQUENCE searches pass as MIN_SEQUENCE), `analytics` (write: the shop's own backend
reads what its shoppers searched; PAYLOAD {"since": s, "until": s, "top": n}, catalog/analytics.py); `shops` lists the shops the key
covers (admin: every shop); `experiment` (search: the shop's latest experiment, its generations,
share and times, and while it runs one USER per arm that a search is answered as) and
`experiment_report` (write, as `analytics`: its per-arm figures and verdicts from the search log
and events, runtime/experiment_report.py); `popularity` (write, as `analytics`: the shop's setting
and its products' event scores, best first) and `set_popularity` (write: PAYLOAD the setting,
catalog/ranking/event_popularity.py; opting in makes the `popularity` boost read shoppers' events;
returns its SEQUENCE). Key actions (runtime/key_admin.py) need an admin key. Rule, synonym and
closed-list changes and every key operation go into the audit trail. `record_swap` (admin) is
how the deploy tool (control/deploy/swap.py, a process Prometheus does not scrape) counts a
generation swap's stages in `productsearch_swaps_total` and the audit trail.
"""
from __future__ import annotations

import json
import time

import numpy as np

from productsearch.catalog.analytics import report as analytics_report
from productsearch.catalog.events import EventStore, events_path
from productsearch.catalog.keys.store import KeyError_
from productsearch.catalog.ranking.event_popularity import PopularityError, check_setting, decayed_scores
from productsearch.catalog.ranking.merchandising import RuleError, check_rules
from productsearch.catalog.ranking.synonyms import SynonymError, check_synonyms
from productsearch.catalog.records import RecordError, product_id
from productsearch.catalog.store import list_shops, open_store
from productsearch.runtime.authorize import Principal, Refused
from productsearch.runtime.catalog_writes import CatalogModel, checked, column, error_response, shop_of
from productsearch.runtime.experiment_report import shop_report
from productsearch.runtime.experiments import CONTROL, TREATMENT, arm_user, read_experiments
from productsearch.runtime.key_admin import KEY_ACTIONS, key_action
from productsearch.runtime.model_io import RequestError, response

MAX_LOOKUP = 100  # ids per `products` request (a results page is 10-50)
READ_ACTIONS = ("info", "product", "products", "rules", "synonyms", "experiment")
SWAP_STAGES = ("started", "finished", "failed", "experiment_start", "experiment_stop", "experiment_promote")
WRITE_ACTIONS = ("set_closed_values", "set_rules", "set_synonyms", "analytics", "experiment_report", "popularity",
                 "set_popularity")
POPULAR_TOP = 20  # products `popularity` lists


def lookup_ids(payload: dict) -> list[str]:
    """The checked ids of a `products` PAYLOAD, duplicates dropped, order kept."""
    ids = payload.get("ids")
    if not isinstance(ids, list) or not all(isinstance(pid, str) for pid in ids):
        raise RequestError('products needs {"ids": ["P1", ...]} (a list of product ids)')
    if len(ids) > MAX_LOOKUP:
        raise RequestError(f"products: {len(ids)} ids, at most {MAX_LOOKUP} per request")
    return list(dict.fromkeys(checked(product_id, pid) for pid in ids))


class CatalogAdminModel(CatalogModel):
    def execute(self, requests):
        out = []
        for request in requests:
            try:
                principal = self.gate.principal(request)
                action = column(request, "ACTION")[0].decode()
                payload = json.loads((column(request, "PAYLOAD", required=False) or [b"{}"])[0] or b"{}")
                if not isinstance(payload, dict):
                    raise RequestError("PAYLOAD must be a JSON object")
                shop = shop_of(request, 1)
                out.append(response(RESULT=np.array([[json.dumps(self.act(principal, action, shop, payload)).encode()]],
                                                    dtype=object)))
            except KeyError_ as err:
                out.append(error_response(RequestError(str(err))))
            except ValueError as err:
                out.append(error_response(err if isinstance(err, (RequestError, RecordError)) else RequestError(f"PAYLOAD: {err}")))
            except Exception as err:  # noqa: BLE001
                out.append(error_response(err))
        return out

    def act(self, principal: Principal | None, action: str, shop: str, payload: dict) -> dict:
        if action in KEY_ACTIONS:
            if principal is None:
                raise Refused("UNAUTHENTICATED", "no_key", "no key: key management needs an admin key")
            if not principal.allows("admin"):
                raise Refused("PERMISSION_DENIED", "wrong_scope",
                              f"key {principal.key_id} has scope {principal.scope!r}; key management needs 'admin'")
            return key_action(self.gate, principal, action, payload)
        if action == "shops":
            if principal is None:
                raise Refused("UNAUTHENTICATED", "no_key", "no key: listing shops needs a key")
            names = [name for name in list_shops(self.url) if principal.covers(name)]
            return {"shops": {name: open_store(self.url, name, create=False).info() for name in names}}
        if action == "create_shop":  # the only way a shop but the default one comes to exist
            if principal is None or not principal.allows("admin"):
                raise Refused("UNAUTHENTICATED" if principal is None else "PERMISSION_DENIED",
                              "no_key" if principal is None else "wrong_scope", "creating a shop needs an admin key")
            created = shop not in self.stores and shop not in list_shops(self.url)
            info = self.store(shop, create=True).info()
            self.gate.audit.record([(principal.key_id, action, shop, [], None, {"created": created})])
            return {"shop": shop, "created": created, **info}
        if action == "record_swap":
            return self.record_swap(principal, payload)
        if action in READ_ACTIONS:
            self.gate.allow(principal, shop, "search")
        elif action in WRITE_ACTIONS:
            self.gate.allow(principal, shop, "write")
        else:
            raise RequestError(f"unknown ACTION {action!r}: create_shop, info, shops, product, products, set_closed_values, "
                               f"rules, set_rules, synonyms, set_synonyms, analytics, experiment, experiment_report, popularity, set_popularity, record_swap, {', '.join(KEY_ACTIONS)}")
        if action == "info":
            return self.store(shop).info()
        if action == "product":
            return {"product": self.store(shop).product(checked(product_id, str(payload.get("id", ""))))}
        if action == "products":
            return {"products": self.store(shop).products(lookup_ids(payload))}
        if action == "rules":
            return {"rules": self.store(shop).rules()}
        if action == "synonyms":
            return {"synonyms": self.store(shop).synonyms()}
        if action == "analytics":
            return self.analytics(shop, payload)
        if action == "experiment":
            return self.experiment(shop)
        if action == "experiment_report":
            self.store(shop)  # UnknownShop (NOT_FOUND) for a shop nobody created
            return {"shop": shop, **(shop_report(self.url, self.repository, shop) or {"experiment": None})}
        if action == "set_closed_values":
            values = payload.get("values")
            if not isinstance(values, dict) or not all(isinstance(v, list) and all(isinstance(x, str) for x in v)
                                                       for v in values.values()):
                raise RequestError('set_closed_values needs {"values": {"category": ["dress", ...], ...}}')
            self.store(shop).set_meta("closed_values", values)
            self.gate.audit.record([(principal.key_id, action, shop, [], None, {"values": values})])
            return self.store(shop).info()
        if action == "popularity":
            return self.popularity(shop, payload)
        if action == "set_popularity":
            try:
                setting = check_setting(payload)
            except PopularityError as err:
                raise RequestError(f"set_popularity: {err}") from None
            sequence = self.store(shop).set_popularity(setting)
            self.gate.audit.record([(principal.key_id, action, shop, [], sequence, setting)])
            return {"sequence": sequence, "popularity": setting}
        if action == "set_synonyms":
            try:
                synonyms = check_synonyms(payload.get("synonyms"))
            except SynonymError as err:
                raise RequestError(f"set_synonyms: {err}") from None
            sequence = self.store(shop).set_synonyms(synonyms)
            self.gate.audit.record([(principal.key_id, action, shop, [], sequence, {"synonyms": len(synonyms)})])
            return {"sequence": sequence, "synonyms": synonyms}
        try:
            rules = check_rules(payload.get("rules"))
        except RuleError as err:
            raise RequestError(f"set_rules: {err}") from None
        sequence = self.store(shop).set_rules(rules)
        self.gate.audit.record([(principal.key_id, action, shop, [], sequence, {"rules": len(rules)})])
        return {"sequence": sequence, "rules": rules}

    def analytics(self, shop: str, payload: dict) -> dict:
        """The shop's search analytics over [since, until) (catalog/analytics.py)."""
        now = time.time()
        try:
            since, until = float(payload.get("since", now - 7 * 86400)), float(payload.get("until", now))
            top = int(payload.get("top", 20))
        except (TypeError, ValueError):
            raise RequestError('analytics takes {"since": seconds, "until": seconds, "top": n}') from None
        if not 1 <= top <= 1000 or since >= until:
            raise RequestError(f"analytics needs since < until and 1 <= top <= 1000, got {since}, {until}, {top}")
        self.store(shop)  # UnknownShop (NOT_FOUND) for a shop nobody created
        events = EventStore(events_path(self.url, shop, self.repository), durable=False)
        try:
            events.db.execute("BEGIN")  # one snapshot for every figure
            try:
                return {"shop": shop, **analytics_report(events.db, since, until, top)}
            finally:
                events.db.execute("COMMIT")
        finally:
            events.close()

    def popularity(self, shop: str, payload: dict) -> dict:
        """The shop's popularity setting and its products' event scores now, best first (under the
        setting's half-life and weights; the defaults while the shop uses the catalog's field)."""
        top = payload.get("top", POPULAR_TOP)
        if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 1000:
            raise RequestError(f'popularity takes {{"top": n}}, 1 <= n <= 1000, got {top!r}')
        setting = self.store(shop).popularity()
        scoring = setting if setting["source"] == "events" else check_setting({"source": "events"})
        events = EventStore(events_path(self.url, shop, self.repository), durable=False)
        try:
            scores = decayed_scores(events.db, time.time(), scoring["half_life_days"], scoring["weights"])
        finally:
            events.close()
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:top]
        return {"shop": shop, "popularity": setting, "scored_with": scoring,
                "products": [{"id": pid.decode(), "score": round(score, 6)} for pid, score in best]}

    def experiment(self, shop: str) -> dict:
        """The shop's latest experiment (None if it has had none); while it runs, a USER per arm."""
        self.store(shop)
        experiment = read_experiments(self.repository).get(shop)
        running = bool(experiment) and not experiment.get("ended_at")
        found = {"shop": shop, "experiment": experiment, "running": running}
        if running:
            found["arm_users"] = {arm: arm_user(str(experiment["id"]), float(experiment["share"]), arm)
                                  for arm in (CONTROL, TREATMENT)}
        return found

    def record_swap(self, principal: Principal | None, payload: dict) -> dict:
        """One stage of a generation swap (admin): counted by stage and target generation, audited."""
        if principal is None or not principal.allows("admin"):
            raise Refused("UNAUTHENTICATED" if principal is None else "PERMISSION_DENIED",
                          "no_key" if principal is None else "wrong_scope", "record_swap needs an admin key")
        stage, generation = payload.get("stage"), payload.get("generation")
        if stage not in SWAP_STAGES or not isinstance(generation, int) or isinstance(generation, bool) or generation < 1:
            raise RequestError(f'record_swap needs {{"stage": one of {list(SWAP_STAGES)}, "generation": N >= 1}}')
        self.metrics.add("productsearch_swaps_total", 1, stage=stage, target=str(generation))
        self.gate.audit.record([(principal.key_id, "swap_" + stage, None, [], None, {"generation": generation})])
        return {"stage": stage, "generation": generation}
