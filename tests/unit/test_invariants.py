from pathlib import Path

from crmxml import state

from dcnlab.cluster.invariants import View, ViolationKind, banned, episodes, latest, merge, replay
from dcnlab.cluster.invariants import check as check_placement
from dcnlab.cluster.spec import DEFAULT_SPEC, load_spec, parse_spec

SPEC = load_spec(DEFAULT_SPEC)
BAD = load_spec(Path(__file__).parents[2] / "suites/specs/bad/no_fencing_ignore_quorum.yaml")
ALL = ["dcn1", "dcn2", "dcn3"]
HEALTHY = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"], "witness": ["dcn2"], "fence_dcn": ["dcn3"]}


def view(observer: str, t: float, members: list[str] | None, *args: object, **kwargs: object) -> View:
    return View(observer, t, state(*args, **kwargs), frozenset(members) if members is not None else None)


def check(views: list[View], spec=SPEC):  # type: ignore[no-untyped-def]
    return check_placement(merge(views), spec)


def test_a_healthy_cluster_breaks_nothing() -> None:
    views = [view(n, 10.0, ALL, ALL, HEALTHY) for n in ALL]
    placement = merge(views)
    assert placement.nodes("web") == {"dcn1"}
    assert placement.nodes("vip") == {"dcn1"}
    assert placement.partitions == (frozenset(ALL),)
    assert check(views) == []


def test_split_brain_needs_the_views_of_both_sides() -> None:
    # dcn1 is cut off, with quorum ignored and no fencing: it keeps web, and
    # the others start web too. Each side's crm_mon shows only itself.
    cut_off = view("dcn1", 50.0, ["dcn1"], ["dcn1"], {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"]},
                   offline=["dcn2", "dcn3"])  # fmt: skip
    survivors = {"vip": ["dcn2"], "http": ["dcn2"], "app": ["dcn2"], "witness": ["dcn3"], "fence_dcn": []}
    dcn2 = view("dcn2", 50.4, ["dcn2", "dcn3"], ["dcn2", "dcn3"], survivors, offline=["dcn1"])
    dcn3 = view("dcn3", 50.2, ["dcn2", "dcn3"], ["dcn2", "dcn3"], survivors, offline=["dcn1"])
    assert check([cut_off]) == []
    assert check([dcn2, dcn3]) == []
    found = check([cut_off, dcn2, dcn3], BAD)
    split = {v.resource: v for v in found if v.kind is ViolationKind.SPLIT_BRAIN}
    assert set(split) == {"vip", "http", "app"}
    vip = split["vip"]
    assert vip.nodes == ("dcn1", "dcn2")
    assert vip.observers == ("dcn1", "dcn2")  # the freshest view of each partition speaks
    assert vip.t == 50.4
    assert "dcn1 per dcn1; dcn2 per dcn2" in vip.detail
    assert all(v.kind is ViolationKind.SPLIT_BRAIN for v in found)


def test_claims_about_nodes_a_view_sees_offline_are_stale() -> None:
    # Before the fence completes, survivors still list web on the lost,
    # unclean dcn1; that is not a second copy.
    before_fence = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"], "witness": ["dcn2"]}
    v = view("dcn2", 20.0, ["dcn2", "dcn3"], ["dcn2", "dcn3"], before_fence, unclean=["dcn1"])
    assert merge([v]).nodes("web") == frozenset()
    assert check([v]) == []


def test_multiple_active_within_one_view() -> None:
    # After a partition heals, Pacemaker itself shows a resource on two nodes.
    v = view("dcn2", 70.0, ALL, ALL, {**HEALTHY, "vip": ["dcn1", "dcn2"], "witness": ["dcn3"]})
    (found,) = check([v])
    assert found.kind is ViolationKind.SPLIT_BRAIN
    assert found.resource == "vip"
    assert found.nodes == ("dcn1", "dcn2")


def test_clones_may_run_everywhere() -> None:
    xml_state = state(ALL, {})
    assert merge([View("dcn1", 1.0, xml_state)]).primitives == frozenset()


def test_colocation_and_anti_colocation() -> None:
    apart = view("dcn1", 5.0, ALL, ALL, {**HEALTHY, "app": ["dcn2"]})
    (v,) = check([apart])
    assert v.kind is ViolationKind.COLOCATION
    assert (v.resource, v.other, v.nodes, v.other_nodes) == ("app", "web", ("dcn2",), ("dcn1",))
    together = view("dcn1", 5.0, ALL, ALL, {**HEALTHY, "witness": ["dcn1"]})
    (v,) = check([together])
    assert v.kind is ViolationKind.ANTI_COLOCATION
    assert "witness must never run with web, but both run on dcn1" in v.detail


def test_colocation_only_when_both_run() -> None:
    # web stopped (moving): app and witness may be anywhere meanwhile.
    moving = view("dcn1", 5.0, ALL, ALL, {"vip": [], "http": [], "app": ["dcn3"], "witness": ["dcn1"]})
    assert check([moving]) == []


def test_a_group_runs_where_any_member_runs() -> None:
    # Mid-move: vip already on dcn2, http not yet; witness on dcn2 breaks the rule.
    v = view("dcn1", 5.0, ALL, ALL, {"vip": ["dcn2"], "http": [], "witness": ["dcn2"]})
    assert merge([v]).nodes("web") == {"dcn2"}
    assert [x.kind for x in check([v])] == [ViolationKind.ANTI_COLOCATION]


BANNING = parse_spec(
    """
workloads:
  - {id: web, group: [vip, http]}
  - {id: vip, type: ipaddr2}
  - {id: http, type: systemd, unit: dcn-http}
  - {id: witness, type: ocf, agent: "ocf:pacemaker:Dummy"}
constraints:
  - ban: {rsc: web, node: dcn3}
  - location: {rsc: witness, prefers: dcn1, score: -INFINITY}
  - location: {rsc: witness, prefers: dcn2, score: -100}
"""
)


def test_banned_nodes() -> None:
    assert set(banned(BANNING)) == {("web", "dcn3"), ("vip", "dcn3"), ("http", "dcn3"), ("witness", "dcn1")}
    ok = view("dcn1", 1.0, ALL, ALL, {"vip": ["dcn1"], "http": ["dcn1"], "witness": ["dcn2"]})
    assert check([ok], BANNING) == []
    bad = view("dcn1", 1.0, ALL, ALL, {"vip": ["dcn3"], "http": ["dcn3"], "witness": ["dcn1"]})
    found = {(v.kind, v.resource, v.nodes) for v in check([bad], BANNING)}
    assert found == {
        (ViolationKind.BANNED_NODE, "web", ("dcn3",)),
        (ViolationKind.BANNED_NODE, "vip", ("dcn3",)),
        (ViolationKind.BANNED_NODE, "http", ("dcn3",)),
        (ViolationKind.BANNED_NODE, "witness", ("dcn1",)),
    }


def test_replay_merges_views_collected_later() -> None:
    # dcn1 recorded its own views while cut off (every 2 s); the sampler had
    # the survivors' (every second). Merged by time, the split brain shows.
    mine = {"vip": ["dcn1"], "http": ["dcn1"]}
    theirs = {"vip": ["dcn2"], "http": ["dcn2"]}
    views = [view("dcn1", 100.0 + 2 * i, ["dcn1"], ["dcn1"], mine) for i in range(5)]
    views += [view("dcn2", 100.5 + i, ["dcn2", "dcn3"], ["dcn2", "dcn3"], {"vip": [], "http": []}) for i in range(3)]
    views += [view("dcn2", 103.5 + i, ["dcn2", "dcn3"], ["dcn2", "dcn3"], theirs) for i in range(6)]
    assert {v.observer for v in latest(views, 104.0, 3.0)} == {"dcn1", "dcn2"}
    assert [v.observer for v in latest(views, 120.0, 3.0)] == []
    found = replay(views, BAD, max_age=3.0)
    assert found
    assert all(v.kind is ViolationKind.SPLIT_BRAIN for v in found)
    assert min(v.t for v in found) == 103.5
    eps = episodes(found, gap=3.0)
    assert {(e.first.resource, e.first.t) for e in eps} == {("vip", 103.5), ("http", 103.5)}
    assert all(e.last_t == 108.5 and e.observers == ("dcn1", "dcn2") for e in eps)
    assert eps[0].to_dict()["samples"] == eps[0].samples


def test_episodes_split_on_gaps() -> None:
    v = view("dcn2", 0.0, ALL, ALL, {**HEALTHY, "vip": ["dcn1", "dcn2"], "witness": ["dcn3"]})
    (first,) = check([v])
    later = [first.__class__(**{**first.__dict__, "t": t}) for t in (1.0, 2.0, 30.0)]
    assert [(e.first.t, e.last_t, e.samples) for e in episodes([first, *later], gap=5.0)] == [
        (0.0, 2.0, 3),
        (30.0, 30.0, 1),
    ]


def test_one_side_seen_at_two_moments_of_a_join_is_not_a_split_brain() -> None:
    # dcn4 is joining: dcn1's membership still lacks it, dcn2's has it, and
    # between their samples web moved from dcn3 to dcn1. Both claims are true
    # at their own moment; they are one side of the cluster, not two.
    four = [*ALL, "dcn4"]
    before = {"vip": ["dcn3"], "http": ["dcn3"], "app": ["dcn3"], "witness": ["dcn2"]}
    after = {"vip": ["dcn1"], "http": ["dcn1"], "app": ["dcn1"], "witness": ["dcn2"]}
    dcn1 = view("dcn1", 30.0, ALL, ALL, before)
    dcn2 = view("dcn2", 33.0, four, four, after)
    placement = merge([dcn1, dcn2])
    assert placement.observers == ("dcn2",)  # the freshest view of the side speaks
    assert placement.nodes("vip") == {"dcn1"}
    assert check([dcn1, dcn2]) == []
    # A node that counts the other side as a member but is not counted back
    # (dcn3 cut off, still listing everyone) stays a side of its own.
    cut_off = view("dcn3", 31.0, ALL, ALL, before)
    survivors = view("dcn2", 33.0, ["dcn1", "dcn2"], ["dcn1", "dcn2"], after, offline=["dcn3"])
    assert len(merge([cut_off, survivors]).observers) == 2
