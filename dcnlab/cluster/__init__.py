"""The Pacemaker/Corosync cluster on a fleet: its spec, and pure helpers.

- :mod:`dcnlab.cluster.spec` reads and validates a cluster spec (YAML).
- :mod:`dcnlab.cluster.pcs` turns a spec and a fleet's node plans into the
  pcs argument lists that build that cluster.
- :mod:`dcnlab.cluster.crm` is a typed view of ``crm_mon --output-as=xml``.
- :mod:`dcnlab.cluster.corosync` parses ``corosync-cfgtool`` and
  ``corosync-quorumtool`` and renders ``corosync.conf``.
- :mod:`dcnlab.cluster.fencing` writes fence_virtd's config and command line
  for the hypervisor side of fence_virt.

Everything here is pure (no I/O besides reading the spec file), so it is unit
tested without VMs; running the argument lists on nodes is the bootstrap's job.
"""
