"""Which fleet nodes count as cluster members while a spare waits to join."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dcnlab.cluster.bootstrap import Cluster
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec
from dcnlab.core.errors import ClusterError, CommandError, WaitTimeout
from dcnlab.core.proc import Result
from dcnlab.fleet.fleet import Fleet


def _cluster(states: dict[str, str]) -> Cluster:
    nodes = {name: SimpleNamespace(name=name) for name in states}
    fleet: Any = SimpleNamespace(nodes=nodes, domain_state=lambda name: states[name])
    fleet.running = lambda: Fleet.running(fleet)  # the real method, on the states above
    return Cluster(fleet, load_spec(DEFAULT_SPEC), None, progress=lambda _line: None)


def test_a_spare_is_no_member_until_it_joins() -> None:
    cluster = _cluster({"dcn1": "running", "dcn2": "running", "dcn3": "shut-off", "dcn4": "running"})
    cluster._spares.add("dcn4")
    # dcn3 is off (fenced, say): not a member either; dcn4 runs but has not joined.
    assert [n.name for n in cluster.members()] == ["dcn1", "dcn2"]
    assert cluster.spares == ["dcn4"]


def test_only_a_spare_joins_or_is_dropped() -> None:
    cluster = _cluster({"dcn1": "running", "dcn2": "running"})
    with pytest.raises(ClusterError, match=r"dcn2 is not a spare of cluster dcn: boot_spare\(\) first"):
        cluster.add_node(cluster.fleet.nodes["dcn2"])
    with pytest.raises(ClusterError, match=r"dcn2 is not a spare of cluster dcn \(spares: \[\]\)"):
        cluster.drop_spare("dcn2")


class _Via:
    """A member answering ``corosync-cfgtool -R`` from a script of results."""

    name = "dcn2"

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def run(self, argv: list[str], **_kw: object) -> Result:
        assert argv == ["corosync-cfgtool", "-R"]
        self.calls += 1
        code, err = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return Result("corosync-cfgtool -R", code, "Reloading corosync.conf...\n", err, 0.3, "dcn2@10.77.0.12")


def _fast_cluster() -> Cluster:
    cluster = _cluster({"dcn1": "running", "dcn2": "running"})
    cluster.fleet.accel = SimpleNamespace(scale=0.05, name="tcg")  # 3 s of membership deadline
    return cluster


BUSY = (6, "Could not reload configuration. Error CS_ERR_TRY_AGAIN\n")


def test_a_reload_refused_while_the_membership_changes_is_tried_again() -> None:
    via = _Via(BUSY, BUSY, (0, ""))
    _fast_cluster()._reload_conf(via)  # type: ignore[arg-type]
    assert via.calls == 3


def test_a_reload_that_fails_otherwise_is_raised_at_once() -> None:
    via = _Via((1, "Could not reload configuration. Error CS_ERR_LIBRARY\n"))
    with pytest.raises(CommandError, match="CS_ERR_LIBRARY"):
        _fast_cluster()._reload_conf(via)  # type: ignore[arg-type]
    assert via.calls == 1


def test_a_reload_busy_past_the_deadline_names_the_wait_and_the_answer() -> None:
    via = _Via(BUSY)
    with pytest.raises(WaitTimeout, match=r"corosync on dcn2 to take the new corosync.conf(.|\n)*CS_ERR_TRY_AGAIN"):
        _fast_cluster()._reload_conf(via)  # type: ignore[arg-type]
    assert via.calls >= 2


def test_crm_mon_asks_the_faulted_node_last() -> None:
    """A node the fault hit may not answer (lost) or see only itself (cut
    off): ``last_resort`` puts it after the others, which answer first."""
    xml = (Path(__file__).parent / "data" / "crm_mon_dcn_app_started.xml").read_text()
    asked: list[str] = []

    def member(name: str, answers: bool) -> SimpleNamespace:
        def run(argv: list[str], **_kw: object) -> Result:
            asked.append(name)
            if not answers:
                raise ClusterError(f"{name} does not answer")
            return Result("crm_mon", 0, xml, "", 0.3, f"{name}@10.77.0.1")

        return SimpleNamespace(name=name, run=run)

    cluster = _cluster({"dcn1": "running", "dcn2": "running", "dcn3": "running"})
    cluster.fleet.accel = SimpleNamespace(scale=1.0, name="tcg")
    nodes = {n: member(n, answers=n != "dcn3") for n in ("dcn1", "dcn2", "dcn3")}
    cluster.fleet.nodes = nodes
    assert cluster.state(last_resort="dcn1").where("app") == ["dcn1"]
    assert asked == ["dcn2"]
    asked.clear()
    cluster.crm_mon_xml(last_resort="dcn2")
    assert asked == ["dcn1"]
    with pytest.raises(ClusterError, match="no node could report the cluster state: dcn3: dcn3 does not answer"):
        cluster.state(via=nodes["dcn3"])  # type: ignore[arg-type]
