"""Embedded hypervisors of different runs share nothing: two run at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dcnlab.fleet.libvirt.hypervisor import EmbeddedHypervisor

pytestmark = pytest.mark.integration


def test_two_embedded_hypervisors_run_side_by_side(tmp_path: Path) -> None:
    started = []
    try:
        for tag in ("a", "b"):
            hv = EmbeddedHypervisor.start(tmp_path / tag, f"hv{tag}{os.getpid()}", f"run-{tag}", lambda _h: None)
            started.append(hv)
        for hv in started:
            conn = hv.connect()
            try:
                assert conn.getLibVersion() > 0
                assert conn.listAllDomains() == []
            finally:
                conn.close()
        assert started[0].uri != started[1].uri
    finally:
        for hv in started:
            hv.stop()
    for hv in started:
        assert not Path(f"/run/netns/{hv.name}").exists()
