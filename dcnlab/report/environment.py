"""What a run certified on: the image, the spec, the engine and the versions of
the packages the spec needs, as the timing report and Allure show them."""

from __future__ import annotations

from dcnlab.certify import preflight
from dcnlab.cluster.spec import ClusterSpec
from dcnlab.core.errors import DcnlabError
from dcnlab.fleet.fleet import Fleet
from dcnlab.fleet.libvirt.hypervisor import EmbeddedHypervisor
from dcnlab.report.timing import Environment


def environment_of(fleet: Fleet, spec: ClusterSpec) -> Environment:
    image = fleet.image
    return Environment(
        image_recipe=image.recipe,
        image_digest=image.digest,
        image_path=str(image.disk),
        spec=str(spec.path),
        accelerator=fleet.accel.name,
        hypervisor=_hypervisor(fleet),
        versions=_stack_versions(fleet, spec),
        placement=dict(fleet.record.placement),
    )


def _hypervisor(fleet: Fleet) -> str:
    if fleet.lab is not None:
        hosts = ", ".join(f"{h.name} {'qemu+tls' if h.remote else 'local'}" for h in fleet.lab.hosts)
        return f"embedded lab of {len(fleet.lab.hosts)} hosts ({hosts})"
    return "embedded" if isinstance(fleet.hv, EmbeddedHypervisor) else str(fleet.hv.uri)


def _stack_versions(fleet: Fleet, spec: ClusterSpec) -> dict[str, str]:
    """The versions of the packages the spec needs (the cluster stack and
    what its agents come with) on the first running node (one image: the
    same everywhere), as the preflight suite reads them. Running:
    after a case whose heal did not wait, a fenced node is still off, and
    its connection from before the fence answers nothing."""
    running = fleet.running()
    if not running:
        return {"unknown": f"no node of fleet {fleet.name} is running"}
    node = running[0]
    timeout = 60 * fleet.accel.scale
    try:
        family = preflight.os_family(node.run(["cat", "/etc/os-release"], timeout=timeout).stdout)
        names = preflight.requirements_of(spec).package_names(family)
        query = node.run(preflight.package_query_command(family, names), timeout=timeout, check=False)
    except DcnlabError as err:  # the report says why instead of failing the case
        return {"unknown": str(err).splitlines()[0]}
    return preflight.parse_package_query(query.stdout)
