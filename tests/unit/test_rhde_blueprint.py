"""The RHDE blueprint (images/rhde/) stays in step with the stand-in and the
preflight: it cannot be built here, so these checks are what keeps it honest."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from dcnlab.certify import preflight

RHDE = Path(__file__).resolve().parents[2] / "images" / "rhde"
GUEST = RHDE.parents[1] / "dcnlab" / "image" / "guest"


def blueprint(name: str = "dcn-rhde.toml") -> dict[str, Any]:
    with (RHDE / name).open("rb") as fh:
        return tomllib.load(fh)


def test_blueprint_has_every_package_the_preflight_requires() -> None:
    names = {p["name"] for p in blueprint()["packages"]}
    required = {req.rpm for req in preflight.REQUIRED_PACKAGES}
    assert required <= names, f"missing from the blueprint: {sorted(required - names)}"
    assert {"chrony", "cloud-init", "firewalld", "openssh-server", "python3"} <= names


def test_blueprint_services_and_firewall() -> None:
    custom = blueprint()["customizations"]
    assert {"sshd", "chronyd", "pcsd", "cloud-init"} <= set(custom["services"]["enabled"])
    assert set(custom["services"]["disabled"]) == {"corosync", "pacemaker"}
    assert "high-availability" in custom["firewall"]["services"]["enabled"]
    assert "8080:tcp" in custom["firewall"]["ports"]
    assert "net.ifnames=0" in custom["kernel"]["append"]


def test_blueprint_embeds_the_guest_workload_verbatim() -> None:
    files = {f["path"]: f for f in blueprint()["customizations"]["files"]}
    assert files["/etc/dcnlab/dcn-http"]["data"] == (GUEST / "dcn-http").read_text()
    assert files["/etc/dcnlab/dcn-http"]["mode"] == "0755"
    unit = (GUEST / "dcn-http.service").read_text()
    assert files["/etc/systemd/system/dcn-http.service"]["data"] == unit.replace(
        "ExecStart=/usr/local/bin/dcn-http", "ExecStart=/etc/dcnlab/dcn-http"
    )


def test_blueprint_embeds_the_workload_container() -> None:
    (container,) = blueprint()["containers"]
    assert container["source"] == "localhost/dcn-http:latest"


def test_raw_blueprint_and_repo_source_parse() -> None:
    raw = blueprint("dcn-rhde-raw.toml")
    assert raw["name"] == "dcn-rhde-raw"
    assert "packages" not in raw  # edge-raw-image takes its content from the commit
    repo = blueprint("ha-repo.toml")
    assert repo["type"] == "yum-baseurl"
    assert "highavailability" in repo["url"]
    assert repo["rhsm"] is True


def test_containerfile_copies_the_same_script() -> None:
    text = (RHDE / "Containerfile.dcn-http").read_text()
    assert "COPY dcn-http /bin/dcn-http" in text
    assert 'CMD ["/bin/dcn-http"]' in text
    assert "DCN_HTTP_RUNTIME=container" in text
