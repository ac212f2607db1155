"""Which identity channels a fleet offers an image (dcnlab.image.identity), and
how recipes declare what their image reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcnlab.certify.preflight import IDENTITY_COMMAND, identity_problems, root_login_problems
from dcnlab.core.errors import ConfigError
from dcnlab.fleet.node import Access
from dcnlab.fleet.spec import FleetSpec, NodePlan
from dcnlab.fleet.sshconfig import ssh_config_text
from dcnlab.image.builder import LOGIN_KEY, _customize_script, parse_recipe
from dcnlab.image.identity import CHANNELS, KERNEL, channels, describe, login


def test_direct_kernel_boot_has_the_command_line_only() -> None:
    assert channels(True, (), "auto") == (KERNEL,)
    with pytest.raises(ConfigError, match="boots its kernel directly"):
        channels(True, (), "smbios")


def test_auto_offers_what_the_image_says_it_reads() -> None:
    assert channels(False, ("smbios",), "auto") == ("smbios",)
    assert channels(False, ("cloud-init",), "auto") == ("cloud-init",)


def test_an_image_that_does_not_say_gets_every_channel() -> None:
    assert channels(False, (), "auto") == CHANNELS == ("cloud-init", "smbios")


def test_an_explicit_choice_overrides_the_image() -> None:
    assert channels(False, ("cloud-init",), "smbios") == ("smbios",)


def test_unknown_choice_is_refused() -> None:
    with pytest.raises(ConfigError, match="choose one of auto, cloud-init, smbios"):
        channels(False, (), "ignition")
    with pytest.raises(ConfigError, match="--identity ignition: choose one of"):
        FleetSpec(name="t", identity="ignition")


def test_describe_names_what_each_channel_needs() -> None:
    text = describe(CHANNELS)
    assert "cloud-init: a cloud-init NoCloud seed" in text
    assert "smbios: SMBIOS systemd credentials" in text
    assert "systemd >= 252" in text


DISK = b"""
name = "t"
suite = "bookworm"
disk_size = "2G"
[packages]
include = ["systemd"]
[boot]
mode = "disk"
"""


def test_a_recipe_declares_the_channels_its_image_reads(tmp_path: Path) -> None:
    recipe = parse_recipe(DISK + b'identity = ["smbios", "cloud-init"]\n', tmp_path / "t.toml")
    assert recipe.identity == ("smbios", "cloud-init")
    assert parse_recipe(DISK, tmp_path / "t.toml").identity == ()


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (b'identity = ["ignition"]\n', "name each of cloud-init, smbios at most once"),
        (b'identity = ["smbios", "smbios"]\n', "at most once"),
    ],
)
def test_a_recipe_with_a_bad_channel_is_refused(tmp_path: Path, line: bytes, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_recipe(DISK + line, tmp_path / "t.toml")


def test_identity_needs_a_disk_boot(tmp_path: Path) -> None:
    raw = DISK.replace(b'mode = "disk"', b'mode = "kernel"') + b'identity = ["smbios"]\n'
    with pytest.raises(ConfigError, match=r"applies to boot\.mode"):
        parse_recipe(raw, tmp_path / "t.toml")


def test_the_shipped_disk_recipes_say_what_they_read() -> None:
    from dcnlab.image.builder import load_recipe

    assert load_recipe("dcn-debian-disk").identity == ("cloud-init",)
    smbios = load_recipe("dcn-debian-disk-smbios")
    assert smbios.identity == ("smbios",)
    assert "cloud-init" not in smbios.packages
    assert "dcnlab-credentials.service" in smbios.enable
    assert smbios.login_user == "dcnadmin"
    assert "sudo" in smbios.packages


# --------------------------------------------------------------------------- preflight checks


def _node() -> NodePlan:
    return FleetSpec(name="t").plan().node(1, 2)


def _ip_json(node: NodePlan, *, swap: bool = False, drop: int | None = None) -> str:
    links = [{"ifname": "lo", "address": "00:00:00:00:00:00", "addr_info": [{"family": "inet", "local": "127.0.0.1"}]}]
    nics = list(node.nics)
    addrs = [str(n.address) for n in nics]
    if swap:
        addrs.reverse()
    for i, (nic, addr) in enumerate(zip(nics, addrs, strict=True)):
        info = [] if i == drop else [{"family": "inet", "local": addr, "prefixlen": 24}]
        links.append({"ifname": nic.guest_dev, "address": nic.mac, "addr_info": info})
    return json.dumps(links)


def test_identity_as_planned_has_no_problem() -> None:
    node = _node()
    assert identity_problems(node, f"{node.name}\n{_ip_json(node)}") == []


def test_identity_problems_name_hostname_missing_and_swapped_addresses() -> None:
    node = _node()
    problems = identity_problems(node, f"localhost\n{_ip_json(node, swap=True)}")
    assert problems[0] == f"hostname is 'localhost', not {node.name!r}"
    assert f"eth0 (MAC {node.nics[0].mac}) has {node.nics[1].address}, not {node.nics[0].address}" in problems
    assert any("planned for another NIC" in p for p in problems)
    missing = identity_problems(node, f"{node.name}\n{_ip_json(node, drop=1)}")
    assert missing == [f"eth1 (MAC {node.nics[1].mac}) has no IPv4 address, not {node.nics[1].address}"]
    assert identity_problems(node, f"{node.name}\nnot json")[0].startswith("`ip -j addr` printed no JSON")


SSHD_PROHIBIT = "permitrootlogin without-password\npasswordauthentication yes\nkbdinteractiveauthentication no\n"
SSHD_OPEN = "permitrootlogin yes\npasswordauthentication yes\nkbdinteractiveauthentication no\n"


@pytest.mark.parametrize(
    ("sshd", "shadow", "ok"),
    [
        (SSHD_PROHIBIT, "$6$salt$hash", True),  # sshd refuses root's password
        (SSHD_OPEN, "!", True),  # root's password is locked
        (SSHD_OPEN, "*", True),
        (SSHD_OPEN.replace("yes\nkbd", "no\nkbd"), "$6$x$y", True),  # no password logins at all
        (SSHD_OPEN, "$6$salt$hash", False),
        (SSHD_PROHIBIT, "", False),  # an empty password
        ("", "!", False),  # sshd -T printed nothing
    ],
)
def test_root_login_by_key_only(sshd: str, shadow: str, ok: bool) -> None:
    problems = root_login_problems(sshd, shadow)
    assert (problems == []) is ok, problems


# --------------------------------------------------------------------------- the login user


def test_root_with_the_run_key_unless_the_image_or_the_user_says_otherwise(tmp_path: Path) -> None:
    run_key = tmp_path / "id_ed25519"
    assert login(None, None, "root", None, run_key) == ("root", run_key)
    baked = tmp_path / "login_ed25519"
    assert login("dcnadmin", baked, "root", None, run_key) == ("dcnadmin", baked)


def test_an_asked_for_user_needs_a_key_unless_the_image_has_it(tmp_path: Path) -> None:
    run_key, baked = tmp_path / "id_ed25519", tmp_path / "login_ed25519"
    assert login("dcnadmin", baked, "dcnadmin", None, run_key) == ("dcnadmin", baked)
    with pytest.raises(ConfigError, match="--login-user admin needs --login-key PATH"):
        login("dcnadmin", baked, "admin", None, run_key)
    with pytest.raises(ConfigError, match="--login-key /nonexistent/key: no such file"):
        login(None, None, "admin", "/nonexistent/key", run_key)
    key = tmp_path / "mine"
    key.write_text("k")
    assert login(None, None, "admin", str(key), run_key) == ("admin", key.resolve())


def test_a_bad_login_user_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="is not a user name"):
        FleetSpec(name="t", login_user="Admin;rm")


def test_commands_of_a_login_user_run_as_root_through_sudo(tmp_path: Path) -> None:
    root = Access(netns=None, key=tmp_path / "k", ssh_config=tmp_path / "c")
    assert root.root_command("cat /etc/shadow") == "cat /etc/shadow"
    user = Access(netns=None, key=tmp_path / "k", ssh_config=tmp_path / "c", user="dcnadmin")
    assert user.root_command("echo 'a b' | wc -c") == "sudo -n -H -- sh -c 'echo '\"'\"'a b'\"'\"' | wc -c'"
    assert "  User dcnadmin" in ssh_config_text([], user)


LOGIN = DISK.replace(b"[boot]", b'[login]\nuser = "dcnadmin"\n[boot]')


def test_a_recipe_login_user_needs_sudo_and_is_not_root(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='add "sudo" to packages'):
        parse_recipe(LOGIN, tmp_path / "t.toml")
    ok = parse_recipe(LOGIN.replace(b'["systemd"]', b'["systemd", "sudo"]'), tmp_path / "t.toml")
    assert ok.login_user == "dcnadmin"
    with pytest.raises(ConfigError, match="name another user"):
        parse_recipe(LOGIN.replace(b"dcnadmin", b"root"), tmp_path / "t.toml")


def test_the_customize_script_makes_the_user_its_key_and_sudoers(tmp_path: Path) -> None:
    recipe = parse_recipe(LOGIN.replace(b'["systemd"]', b'["systemd", "sudo"]'), tmp_path / "t.toml")
    script = _customize_script(recipe, {LOGIN_KEY: tmp_path / "login_ed25519.pub"})
    assert "useradd --create-home --shell /bin/bash --user-group dcnadmin" in script
    assert "usermod -p '*' dcnadmin" in script
    assert f'install -m 0600 {tmp_path}/login_ed25519.pub "$root"/home/dcnadmin/.ssh/authorized_keys' in script
    assert "'dcnadmin ALL=(ALL) NOPASSWD: ALL' > \"$root/etc/sudoers.d/dcnlab-login\"" in script
    assert 'chmod 0440 "$root/etc/sudoers.d/dcnlab-login"' in script


# iproute2 6.1 (Debian 12), `ip -j -4 addr show lo` and `ip -j addr show lo`:
# with -4 the link's MAC is left out.
IP_4_LO = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue",'
    '"operstate":"UNKNOWN","group":"default","txqlen":1000,"addr_info":[{"family":"inet","local":"127.0.0.1",'
    '"prefixlen":8,"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]'
)
IP_LO = (
    '[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"qdisc":"noqueue",'
    '"operstate":"UNKNOWN","group":"default","txqlen":1000,"link_type":"loopback","address":"00:00:00:00:00:00",'
    '"broadcast":"00:00:00:00:00:00","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8,'
    '"scope":"host","label":"lo","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]'
)


def test_the_identity_command_asks_ip_for_the_macs() -> None:
    # Found on the first boot of dcn-debian-disk-smbios: with `ip -j -4` every NIC looked absent.
    assert " -4" not in IDENTITY_COMMAND
    node = FleetSpec(name="t1").plan().node(1, 2)
    problems = identity_problems(node, f"{node.name}\n{IP_4_LO}")
    assert problems == ["`ip -j addr` printed no link's MAC (a family filter such as -4 drops it): cannot tell"]
    # With the MACs there, the same output is read link by link: only lo, so both NICs are missing.
    assert identity_problems(node, f"{node.name}\n{IP_LO}") == [
        f"no link has MAC {nic.mac} (network {nic.network}, planned {nic.address})" for nic in node.nics
    ]
