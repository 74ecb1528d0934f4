"""The Compare page's experiment arms: the shop's running A/B experiment (catalog_admin
`experiment`, a search key), a query run as its control and as its treatment arm (a search with
a USER the service assigns to that arm), and the per-arm report when the operator's key may read
it (`experiment_report` needs a write key, as the shop's analytics do: a search key is refused
and the page says so)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from productsearch.console.queries import Query

ARMS = ("control", "treatment")
REPORT_FIGURES = (("searches", "searches", "{:d}"), ("ctr", "CTR", "{:.3f}"), ("conversion", "conversion", "{:.3f}"),
                  ("zero_result_rate", "zero-result rate", "{:.3f}"), ("p50_ms", "p50 ms", "{:.1f}"))


@dataclass
class ExperimentView:
    """What the page knows of the shop's experiment; `problem`: why it could not be read."""

    experiment: dict | None = None
    arm_users: dict = field(default_factory=dict)
    report: dict | None = None
    report_refused: str = ""
    problem: str = ""

    @property
    def running(self) -> bool:
        return bool(self.experiment and self.arm_users)

    @property
    def since(self) -> str:
        started = float(self.experiment["started_at"])
        minutes = max(int((time.time() - started) // 60), 0)
        return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))} ({minutes} min ago)"

    def generation(self, arm: str) -> int:
        return int(self.experiment[arm])

    def figures(self, arm: str) -> list[tuple[str, str]]:
        """(label, value) of the report's figures for one arm, as the summary table shows them."""
        cell = self.report["arms"][arm]
        return [(label, form.format(cell[key])) for key, label, form in REPORT_FIGURES]


def experiment_view(client, shop: str | None, problem) -> ExperimentView:
    """The shop's running experiment and, if this key may read it, its report."""
    try:
        found = client.experiment(shop)
    except Exception as err:  # noqa: BLE001 - shown on the page; the settings compare goes on
        return ExperimentView(problem=problem(err))
    if not found.get("running"):
        return ExperimentView()
    view = ExperimentView(found["experiment"], found["arm_users"])
    try:
        view.report = client.experiment_report(shop)
    except Exception as err:  # noqa: BLE001 - a search key: the arms without the figures
        view.report_refused = problem(err)
    return view


def arm_queries(text: str, view: ExperimentView) -> dict[str, Query]:
    """The query as side A (the control arm) and side B (the treatment arm)."""
    return {side: Query(text=text, user=view.arm_users[arm]) for side, arm in zip(("a", "b"), ARMS)}
