"""The grow/shrink suite's sizes and the members it may remove
(dcnlab/certify/constraints.py), for any fleet size."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcnlab.certify.constraints import (
    Resize,
    client_facing,
    grow_then_shrink,
    pick_removals,
    remove_one,
    shrink_to_two_and_back,
)
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec, parse_spec
from dcnlab.fleet.spec import MAX_NODES

EXAMPLES = Path(__file__).parents[2] / "suites" / "specs" / "examples"


@pytest.mark.parametrize(
    ("nodes", "grow", "remove", "shrink"),
    [
        (3, "3-to-4-to-3", "3-to-2", "3-to-2-to-3"),
        (4, "4-to-5-to-4", "4-to-3", "4-to-2-to-4"),
        (5, "5-to-6-to-5", "5-to-4", "5-to-2-to-5"),
        (2, "2-to-3-to-2", "2-nodes", "2-nodes"),
    ],
)
def test_case_ids_show_the_sizes(nodes: int, grow: str, remove: str, shrink: str) -> None:
    assert (grow_then_shrink(nodes).id, remove_one(nodes).id, shrink_to_two_and_back(nodes).id) == (
        grow,
        remove,
        shrink,
    )


def test_steps_one_node_at_a_time() -> None:
    assert grow_then_shrink(3) == Resize((3, 4, 3))
    assert (grow_then_shrink(3).joins, grow_then_shrink(3).removals) == (1, 1)
    assert remove_one(4) == Resize((4, 3))
    assert (remove_one(4).joins, remove_one(4).removals) == (0, 1)
    four = shrink_to_two_and_back(4)
    assert four.sizes == (4, 3, 2, 3, 4)
    assert (four.removals, four.joins) == (2, 2)
    assert shrink_to_two_and_back(3).sizes == (3, 2, 3)


def test_never_below_two_nodes() -> None:
    for resize in (remove_one(2), shrink_to_two_and_back(2)):
        assert resize.skip.startswith("a 2-node cluster cannot lose a node: that would leave 1, below the 2")
        assert "--dcn-nodes 3" in resize.skip
        assert (resize.removals, resize.joins) == (0, 0)
    assert not grow_then_shrink(2).skip
    assert remove_one(1).skip
    assert not remove_one(3).skip


def test_no_spare_beyond_the_fleets_limit() -> None:
    assert "no spare to join" in grow_then_shrink(MAX_NODES).skip
    assert not grow_then_shrink(MAX_NODES - 1).skip


def test_removals_prefer_the_highest_numbered_free_members() -> None:
    members = ["dcn1", "dcn2", "dcn3", "dcn4"]
    busy = {"dcn1": ["web", "vip"], "dcn2": [], "dcn3": ["app"]}
    assert pick_removals(members, busy, 1) == ("dcn4",)
    assert pick_removals(members, busy, 2) == ("dcn4", "dcn2")
    # By number, not by text: dcn10 is the highest.
    assert pick_removals(["dcn9", "dcn10", "dcn2"], {}, 2) == ("dcn10", "dcn9")


def test_no_removable_member_says_what_runs_where() -> None:
    busy = {"dcn1": ["web", "vip"], "dcn2": ["gateway"], "dcn3": ["app"]}
    why = pick_removals(["dcn1", "dcn2", "dcn3"], busy, 1)
    assert isinstance(why, str)
    assert why.startswith("needs 1 of the 3 members running nothing a client reaches")
    assert "every member runs one (dcn1: vip, web; dcn2: gateway; dcn3: app)" in why
    short = pick_removals(["dcn1", "dcn2", "dcn3", "dcn4"], {"dcn1": ["web"], "dcn2": ["db"]}, 3)
    assert isinstance(short, str)
    assert "only dcn4, dcn3 run none" in short


def test_client_facing_are_workloads_with_a_client_and_floating_ips() -> None:
    assert client_facing(load_spec(DEFAULT_SPEC)) == ("web", "app", "vip")
    assert client_facing(load_spec(EXAMPLES / "plant-4node.yaml")) == (
        "scada",
        "historian-stack",
        "scada-ip",
        "hist-ip",
    )
    # A floating IP no workload names still counts; a workload without a
    # client does not.
    spec = parse_spec(
        "workloads:\n"
        "  - {id: d, type: ocf, agent: 'ocf:pacemaker:Dummy'}\n"
        "  - {id: spare-ip, type: ipaddr2, address: 10.77.0.60}\n"
    )
    assert client_facing(spec) == ("spare-ip",)
