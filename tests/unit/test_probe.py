import json
import sys
import time
from pathlib import Path

import pytest

from dcnlab.core.errors import ConfigError
from dcnlab.fleet.spec import FleetSpec
from dcnlab.observe import probe_program as probe_client
from dcnlab.observe.probe import (
    Attempt,
    ClientProbe,
    Endpoint,
    ProbeError,
    ProbeSettings,
    analyse,
    back_after_failure,
    client_events,
    parse_output,
    probe_argv,
)
from dcnlab.observe.timeline import EventKind

DATA = Path(__file__).parent / "data"


def attempts(pattern: str, *, start: float = 100.0, interval: float = 0.1, target: str = "web") -> list[Attempt]:
    """One attempt per character: a node letter (a = dcn1, b = dcn2...) for a
    success answered by that node, '.' for a failure (timeout)."""
    out = []
    for i, c in enumerate(pattern):
        ok = c != "."
        node = f"dcn{ord(c) - ord('a') + 1}" if ok else None
        out.append(Attempt(target, i, start + i * interval, 0.003 if ok else 1.0, ok, node, 200 if ok else None,
                           None if ok else "timeout"))  # fmt: skip
    return out


def test_outage_and_windows_from_a_failover() -> None:
    av = analyse(attempts("aaaa" + "." * 150 + "bbbbb"))
    assert av.attempts == 159
    assert av.ok == 9
    (o,) = av.outages
    assert o.start == pytest.approx(100.4)
    assert o.end == pytest.approx(115.4)
    assert o.duration == pytest.approx(15.0)
    assert o.last_ok_before == pytest.approx(100.3)
    assert o.last_failed == pytest.approx(115.3)
    assert (o.node_before, o.node_after) == ("dcn1", "dcn2")
    assert o.errors == (("timeout", 150),)
    assert [w.nodes for w in av.windows] == [("dcn1",), ("dcn2",)]
    assert av.node_changes == ((pytest.approx(115.4), "dcn1", "dcn2"),)
    assert av.longest_outage is o


def test_attempts_out_of_order_are_sorted_by_start() -> None:
    recorded = attempts("aa...bb")
    av = analyse(list(reversed(recorded)))
    assert len(av.outages) == 1
    assert av.outages[0].failures == 3


def test_short_blips_can_be_ignored() -> None:
    data = attempts("aaa.aaa..aaa")
    assert len(analyse(data).outages) == 2
    av = analyse(data, min_failures=2)
    assert [o.failures for o in av.outages] == [2]
    assert len(av.windows) == 2


def test_outage_open_at_the_end_and_at_the_start() -> None:
    av = analyse(attempts("..aa...."))
    first, last = av.outages
    assert first.last_ok_before is None
    assert first.end == pytest.approx(100.2)
    assert last.end is None
    assert last.duration == pytest.approx(0.3)
    assert analyse([]).attempts == 0


def test_only_the_named_target() -> None:
    mixed = attempts("aaaa", target="web") + attempts("....", target="app")
    assert analyse(mixed, "web").outages == ()
    assert len(analyse(mixed, "app").outages) == 1


def test_client_events() -> None:
    av = analyse(attempts("aa...bb"))
    events = client_events(av)
    kinds = [e.kind for e in events]
    assert kinds == [EventKind.CLIENT_FAILURE_FIRST, EventKind.CLIENT_RECOVERED, EventKind.CLIENT_NODE_CHANGED]
    fail, back, moved = events
    assert fail.t == pytest.approx(100.2)
    assert fail.earliest == pytest.approx(100.1)
    assert back.t == pytest.approx(100.5)
    assert back.earliest == pytest.approx(100.4)
    assert back.node == "dcn2"
    assert moved.node == "dcn2"
    assert moved.resource == "web"


def test_parse_recorded_output() -> None:
    run = parse_output((DATA / "probe_power_off_dcn1.jsonl").read_text())
    assert run.targets == {"web": "http://10.77.0.100:8080/", "app": "http://10.77.0.100:8081/"}
    assert run.interval == 0.1
    assert run.end_reason == "stdin-closed"
    web = analyse(run.of("web"), "web")
    assert web.longest_outage is not None
    assert web.longest_outage.node_before != web.longest_outage.node_after
    # The data supports its own numbers: failures span the outage.
    o = web.longest_outage
    assert o.last_failed - o.start <= o.duration <= (o.end or 0) - (o.last_ok_before or 0)


def test_parse_tolerates_a_cut_last_line_only() -> None:
    header = json.dumps({"type": "start", "mono": 1.0, "wall": 2.0, "targets": {"w": "tcp://h:1"},
                         "interval": 0.1, "timeout": 1.0})  # fmt: skip
    line = json.dumps({"type": "attempt", "target": "w", "seq": 0, "t": 1.0, "dur": 0.1, "ok": True})
    run = parse_output(f"{header}\n{line}\n{line[:10]}")
    assert len(run.attempts) == 1
    assert run.end_reason is None
    with pytest.raises(ProbeError, match="line 2"):
        parse_output(f"{header}\n{line[:10]}\n{line}\n")
    with pytest.raises(ProbeError, match="no start line"):
        parse_output(line)


def test_who_answered_is_named_by_mac() -> None:
    """The node that served an attempt is the owner of the MAC the address
    resolved to; an unknown MAC names nobody."""
    macs = FleetSpec(name="t").plan().mac_owners(2)
    header = json.dumps({"type": "start", "mono": 1.0, "wall": 2.0, "targets": {"w": "tcp://h:1"},
                         "interval": 0.1, "timeout": 1.0})  # fmt: skip
    lines = [header]
    for seq, mac in enumerate(["52:54:00:DC:00:02", "52:54:00:dc:01:03", "02:00:00:00:00:01", None]):
        lines.append(json.dumps({"type": "attempt", "target": "w", "seq": seq, "t": 1.0 + seq, "dur": 0.1,
                                 "ok": True, "mac": mac}))  # fmt: skip
    run = parse_output("\n".join(lines), macs)
    assert [a.node for a in run.attempts] == ["dcn2", "dcn3", None, None]
    assert macs["52:54:00:dc:01:20"] == "dcn32"  # spares too


def test_neighbour_table_lookup(tmp_path: Path) -> None:
    table = tmp_path / "arp"
    table.write_text(
        "IP address       HW type     Flags       HW address            Mask     Device\n"
        "10.77.0.100      0x1         0x2         52:54:00:dc:00:01     *        brA0\n"
        "10.77.0.12       0x1         0x0         00:00:00:00:00:00     *        brA0\n"
    )
    assert probe_client.neighbour_mac("10.77.0.100", str(table)) == "52:54:00:dc:00:01"
    assert probe_client.neighbour_mac("10.77.0.12", str(table)) is None  # incomplete: nobody answered
    assert probe_client.neighbour_mac("10.77.0.13", str(table)) is None
    assert probe_client.neighbour_mac("10.77.0.100", str(tmp_path / "missing")) is None


def test_an_empty_probe_probes_nothing(tmp_path: Path) -> None:
    """A spec whose workloads declare no client: nothing runs, nothing fails."""
    probe = ClientProbe("dcnlab-t1", [], tmp_path / "p.jsonl").start()
    assert probe.availability() == {}
    assert probe.last_ok("web") is None


def test_http_answer_is_judged_by_status_and_body(tmp_path: Path) -> None:
    """The real program's check of an answer, against a server on this
    host's loopback (no guest address is involved)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name for it
            body = b"historian ok" if self.path == "/health" else b"nope"
            self.send_response(200 if self.path == "/health" else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert probe_client.attempt(f"{base}/health", 2.0, 200, b"ok")[0]
        assert probe_client.attempt(f"{base}/health", 2.0, 200, b"degraded")[3] == "unexpected-body"
        assert probe_client.attempt(f"{base}/", 2.0)[3] == "http-503"
        assert probe_client.attempt(f"{base}/", 2.0, 503)[0]
    finally:
        server.shutdown()
    argv = probe_argv("ns", [Endpoint("h", f"{base}/health", status=204, contains="ok")], ProbeSettings())
    assert argv[argv.index("--status") + 1] == "h=204"
    assert argv[argv.index("--contains") + 1] == "h=ok"
    args = probe_client.parse_args(["--target", f"h={base}/", "--status", "h=204", "--contains", "h=ok",
                                    "--max-duration", "1", "--max-count", "1"])  # fmt: skip
    assert (args.statuses, args.bodies) == ({"h": 204}, {"h": b"ok"})
    with pytest.raises(SystemExit):
        probe_client.parse_args(["--target", f"h={base}/", "--status", "x=204", "--max-duration", "1",
                                 "--max-count", "1"])  # fmt: skip


def test_argv_runs_the_program_in_the_namespace() -> None:
    argv = probe_argv("dcnlab-t1", [Endpoint("web", "http://10.77.0.100:8080/")], ProbeSettings(interval=0.05))
    assert argv[:4] == ["ip", "netns", "exec", "dcnlab-t1"]
    assert argv[5:7] == ["-I", str(Path(probe_client.__file__))]
    assert argv[argv.index("--max-count") + 1] == str(ProbeSettings(interval=0.05).max_count)
    with pytest.raises(ConfigError, match="below"):
        ProbeSettings(interval=0.01)
    with pytest.raises(ConfigError, match="namespace"):
        ClientProbe(None, [], Path("x"))


def test_program_probes_and_stops_by_itself(tmp_path: Path) -> None:
    """The real program, against a closed port on this host's loopback (no
    guest address is involved): bounded by --max-count."""
    out = tmp_path / "out.jsonl"
    args = probe_client.parse_args(
        ["--target", "x=tcp://127.0.0.1:9", "--interval", "0.02", "--timeout", "0.2",
         "--max-duration", "5", "--max-count", "10", "--out", str(out), "--no-stdin-watch"]
    )  # fmt: skip
    t0 = time.monotonic()
    with open(out, "w") as stream:
        reason = probe_client.run(args, probe_client.Output(stream), __import__("threading").Event())
    # Stopped by the count, not the 5 s duration (no wall-clock bound here:
    # a loaded CI host made one flaky).
    assert reason == "max-count"
    run = parse_output(out.read_text())
    assert len(run.attempts) == 10
    assert all(not a.ok and a.err == "refused" for a in run.attempts)
    assert t0 <= run.started <= time.monotonic()  # one monotonic clock


def test_program_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        probe_client.parse_args(["--target", "nourl", "--max-duration", "1", "--max-count", "1"])
    with pytest.raises(SystemExit):
        probe_client.parse_args(["--target", "a=tcp://h:1", "--interval", "0.001", "--max-duration", "1",
                                 "--max-count", "1"])  # fmt: skip


def test_program_is_standard_library_only() -> None:
    import ast

    tree = ast.parse(Path(probe_client.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names - {"__future__"} <= set(sys.stdlib_module_names)


def test_back_after_failure_sees_a_restart_in_place() -> None:
    # Attempts start at t=100.0 and come every 0.1 s; the fault is at 100.15.
    assert back_after_failure(attempts("aaaa...aa"), since=100.15) == "dcn1"  # restarted where it was
    assert back_after_failure(attempts("aaaa...bb"), since=100.15) == "dcn2"  # came back elsewhere
    assert back_after_failure(attempts("aaaa....."), since=100.15) is None  # still failing
    assert back_after_failure(attempts("aaaaaaaaa"), since=100.15) is None  # nothing failed
    assert back_after_failure(attempts("a..aaaaaa"), since=100.35) is None  # failures before the fault
