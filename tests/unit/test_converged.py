"""The health check every heal and every cluster start ends with:
dcnlab.cluster.bootstrap.not_converged on recorded-form crm_mon output."""

from pathlib import Path

from crmxml import state

from dcnlab.cluster.bootstrap import not_converged
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec

SPEC = load_spec(DEFAULT_SPEC)
ALL = ["dcn1", "dcn2", "dcn3"]
HEALTHY = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"], "witness": ["dcn2"], "fence_dcn": ["dcn3"]}
FAIL = {"op_key": "http_monitor_5000", "node": "dcn1", "exitstatus": "not running", "exitreason": "",
        "exitcode": "7", "call": "44", "status": "complete", "last-rc-change": "2025-11-25 10:03:05Z",
        "queued": "0", "exec": "0", "interval": "5000", "task": "monitor"}  # fmt: skip


def test_a_healthy_cluster_has_converged() -> None:
    assert not_converged(SPEC, state(ALL, HEALTHY), ALL) is None


def test_after_a_failover_a_resource_may_stay_where_it_went() -> None:
    # Stickiness keeps web on dcn3 after dcn1 came back: still converged.
    moved = {**HEALTHY, "vip": ["dcn3"], "http": ["dcn3"], "app": ["dcn3"]}
    assert not_converged(SPEC, state(ALL, moved), ALL) is None


def test_each_reason_is_named() -> None:
    assert not_converged(SPEC, state(["dcn1", "dcn2"], HEALTHY, offline=["dcn3"]), ALL) == "nodes not online: dcn3"
    assert not_converged(SPEC, state(ALL, {**HEALTHY, "app": []}), ALL) == "resources not started: app"
    assert not_converged(SPEC, state(ALL, {**HEALTHY, "fence_dcn": []}), ALL) == "resources not started: fence_dcn"
    failed = not_converged(SPEC, state(ALL, HEALTHY, failures=[FAIL]), ALL)
    assert failed is not None
    assert failed.startswith("failed actions: http monitor on dcn1")


def test_resources_must_be_where_the_spec_wants_them() -> None:
    apart = not_converged(SPEC, state(ALL, {**HEALTHY, "app": ["dcn2"]}), ALL)
    assert apart is not None
    assert apart.startswith("resources not where the spec wants them: app must run with web")
    together = not_converged(SPEC, state(ALL, {**HEALTHY, "witness": ["dcn1"]}), ALL)
    assert together is not None
    assert "witness must never run with web" in together
    twice = not_converged(SPEC, state(ALL, {**HEALTHY, "witness": ["dcn2", "dcn3"]}), ALL)
    assert twice is not None
    assert "witness active on 2 nodes at once" in twice


def test_no_fence_device_is_expected_without_fencing() -> None:
    unfenced = load_spec(Path(__file__).parents[2] / "suites/specs/bad/no_fencing_ignore_quorum.yaml")
    assert unfenced.fencing.method == "none"
    assert not_converged(unfenced, state(ALL, {k: v for k, v in HEALTHY.items() if k != "fence_dcn"}), ALL) is None
