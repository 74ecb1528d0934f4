"""Experiment arms and the quality gate, without a server: the split of 10,000 users, stickiness,
the state file the scorer watches, the build's figures in the manifest and the gate's refusal."""
from __future__ import annotations

import time

import pytest

from productsearch.control.deploy.quality_gate import QualityGateRefused, check
from productsearch.control.generations import read_manifest, record_encoders, write_json_atomic
from productsearch.runtime.experiments import CONTROL, TREATMENT, ExperimentWatch, arm_of, arm_user, experiments_path
from tests.unit.test_generation_settings import built

USERS = [f"shopper-{i}" for i in range(10_000)]


@pytest.mark.parametrize("share", [0.1, 0.5])
def test_the_split_of_10000_users_is_within_1_5_points_of_the_share(share):
    treated = sum(arm_of("exp-a", user, share) == TREATMENT for user in USERS)
    assert abs(treated / len(USERS) - share) <= 0.015, treated


def test_arms_are_sticky_per_experiment_and_searches_without_user_are_control():
    first = [arm_of("exp-a", u, 0.3) for u in USERS[:2000]]
    for _ in range(3):
        assert [arm_of("exp-a", u, 0.3) for u in USERS[:2000]] == first
    other = [arm_of("exp-b", u, 0.3) for u in USERS[:2000]]
    assert other != first  # a new experiment draws anew
    assert arm_of("exp-a", "", 0.99) == CONTROL
    # raising the share only moves control users into the treatment
    assert all(arm_of("exp-a", u, 0.5) == TREATMENT for u, arm in zip(USERS[:2000], first) if arm == TREATMENT)


@pytest.mark.parametrize("share", [0.01, 0.5, 0.99])
def test_an_arm_user_lands_in_its_arm_and_is_the_first_that_does(share):
    for arm in (CONTROL, TREATMENT):
        user = arm_user("exp-a", share, arm)
        assert arm_of("exp-a", user, share) == arm
        first = int(user.removeprefix("probe-"))
        assert all(arm_of("exp-a", f"probe-{i}", share) != arm for i in range(first))


def test_the_watch_rereads_the_state_when_it_changes(tmp_path):
    watch = ExperimentWatch(tmp_path)
    assert watch.current() == {}
    write_json_atomic(experiments_path(tmp_path), {"default": {"id": "x", "control": 1, "treatment": 2, "share": 0.1}})
    assert watch.current()["default"]["treatment"] == 2
    time.sleep(0.01)
    write_json_atomic(experiments_path(tmp_path), {})
    assert watch.current() == {}


def gated_repository(tmp_path, serving: dict | None, candidate: dict | None):
    for generation, figures in ((1, serving), (2, candidate)):
        built(tmp_path, generation)
        record_encoders(tmp_path, generation, {"preset": "demo"}, {"text_weight": 0.1}, figures)
    return tmp_path


def test_the_build_records_its_held_out_figures_in_the_manifest(tmp_path):
    repository = gated_repository(tmp_path, {"en_fused_exact": 0.93}, None)
    assert read_manifest(repository, 1)["evaluation"] == {"en_fused_exact": 0.93}
    assert "evaluation" not in read_manifest(repository, 2)


def test_the_gate_refuses_a_worse_generation_naming_the_figures(tmp_path):
    repository = gated_repository(tmp_path, {"en_fused_exact": 0.93, "zh_fused_color": 0.85},
                                  {"en_fused_exact": 0.80, "zh_fused_color": 0.86})
    with pytest.raises(QualityGateRefused) as refused:
        check(repository, 2, 1)
    message = str(refused.value)
    assert "en_fused_exact 0.8000 vs 0.9300 (-0.1300)" in message and "zh_fused_color" not in message
    assert "--force" in message
    assert check(repository, 2, 1, force=True).startswith("quality gate forced")
    assert "within" in check(repository, 2, 1, margin=0.2)


def test_the_gate_passes_a_generation_within_the_margin_and_says_when_it_cannot_compare(tmp_path):
    repository = gated_repository(tmp_path, {"en_fused_exact": 0.93}, {"en_fused_exact": 0.92})
    assert "within 0.02" in check(repository, 2, 1)
    repository = gated_repository(tmp_path / "old", {"en_fused_exact": 0.93}, None)
    assert "not applied" in check(repository, 2, 1) and "2" in check(repository, 2, 1)


def test_the_shadow_report_pairs_each_control_search_with_its_shadow_in_the_search_log(tmp_path):
    from productsearch.catalog.analytics import shadow_pairs
    from productsearch.catalog.events import EventStore, SearchRow
    from productsearch.runtime import shadow_report
    from productsearch.runtime.arm_router import shadow_query_id
    from productsearch.runtime.experiments import SHADOW, SHADOW_DROPPED, SHADOW_FAILED

    store = EventStore(tmp_path / "default.sqlite", durable=False)
    now = time.time()

    def row(query_id, generation, arm, results, latency, filters=None):
        return SearchRow(query_id, now, "text", "red dress", filters or {}, generation, arm, "u", results, latency)

    answers = {"q1": (list("abcdefghij"), list("abcdeVWXYZ")), "q2": (list("abc"), list("abc")),
               "q3": (list("abc"), list("xyz"))}
    rows = []
    for qid, (mine, theirs) in answers.items():
        rows += [row(qid, 2, CONTROL, mine, 4.0), row(shadow_query_id(qid), 1, SHADOW, theirs, 6.0)]
    rows += [row("q4", 2, CONTROL, ["a"], 5.0), row(shadow_query_id("q4"), 1, SHADOW_FAILED, [], 1.0,
                                                     {"error": "scorer version 1 is not found"}),
             row("q5", 2, CONTROL, ["a"], 5.0), row(shadow_query_id("q5"), 1, SHADOW_DROPPED, [], 0.0),
             row("q6", 2, CONTROL, ["a"], 5.0),  # mixed shops, or not written yet: no shadow row
             row("old", 2, CONTROL, ["a"], 5.0)]
    rows[-1].at = now - 3600  # before the experiment
    store.add_searches(rows)
    experiment = {"id": "x", "shop": "default", "control": 2, "treatment": 1, "share": 0.0, "shadow": True,
                  "started_at": now - 60}
    result = shadow_report.summarize(experiment, shadow_pairs(store.db, now - 60, now + 1))
    store.close()
    assert (result["searches"], result["compared"], result["failed"], result["dropped"], result["not_shadowed"]) == \
        (6, 3, 1, 1, 1)
    assert result["overlap_at_10"]["mean"] == pytest.approx((0.5 + 1.0 + 0.0) / 3, abs=1e-4)
    assert result["overlap_at_10"]["compared"] == 3
    control, shadow = result["generations"]
    assert (control["generation"], control["searches"], shadow["generation"], shadow["searches"]) == (2, 6, 1, 3)
    assert shadow["p50_ms"] == 6.0 and control["p50_ms"] == 4.5  # of 4, 4, 4, 5, 5, 5
    assert result["errors"] == [{"error": "scorer version 1 is not found", "searches": 1}]
    text = shadow_report.format_report(result)
    assert "overlap@10: 0.5000" in text and "1 generation 1 failed, 1 dropped" in text
