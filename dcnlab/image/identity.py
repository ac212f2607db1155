"""How a node learns who it is: the identity channels dcnlab offers a guest.

A node's identity is its hostname, one static address per NIC (matched by
MAC) and root's SSH key. An image booted by direct kernel boot gets it on the
kernel command line (the stand-in's ``dcnlab-identity`` unit reads it). An
image that boots its own boot loader (RHEL for Edge, bootc) gets it through
one or more of:

``cloud-init``
    a NoCloud seed labelled CIDATA on a read-only virtio disk (dcnlab/fleet/seed.py). The image
    needs cloud-init with the NoCloud datasource enabled (RHEL for Edge: add
    ``cloud-init`` to the commit blueprint, images/rhde).
``smbios``
    systemd credentials in the SMBIOS type 11 OEM strings
    (dcnlab/fleet/credentials.py). The image needs systemd 252 or later, and on
    systemd 252 a unit that applies the hostname written by tmpfiles and
    orders systemd-networkd after it (dcnlab/image/guest/dcnlab-credentials.service
    is one); no agent otherwise.

Which channels a fleet offers: what ``--dcn-identity`` asks for; with
``auto``, what the image's manifest says it reads (recipes built here say
so), and for an image that does not say, every channel (each is inert to an
image that does not read it, so offering both costs nothing).
"""

from __future__ import annotations

from pathlib import Path

from dcnlab.core.errors import ConfigError

# How disk-booted images learn their identity (FleetSpec.identity, --dcn-identity).
IDENTITY_CHOICES = ("auto", "cloud-init", "smbios")
CHANNELS = IDENTITY_CHOICES[1:]
CHOICES = IDENTITY_CHOICES
KERNEL = "kernel"  # direct kernel boot: the identity is on the kernel command line

WHAT_IT_NEEDS = {
    "cloud-init": "a cloud-init NoCloud seed (a virtio disk labelled CIDATA): "
    "needs cloud-init with the NoCloud datasource",
    "smbios": "SMBIOS systemd credentials (OEM strings): needs systemd >= 252 and, on 252, a unit applying "
    "/etc/hostname (dcnlab/image/guest/dcnlab-credentials.service)",
    KERNEL: "the kernel command line (dcnlab.ssh_key=, ip=, systemd.hostname=): needs a unit reading it "
    "(dcnlab/image/guest/dcnlab-identity)",
}


def check_choice(wanted: str) -> str:
    if wanted not in CHOICES:
        raise ConfigError(f"identity {wanted!r}: choose one of {', '.join(CHOICES)}")
    return wanted


def check_offered(offered: tuple[str, ...], where: str) -> tuple[str, ...]:
    """The channels an image says it reads (its manifest or recipe), checked."""
    unknown = [c for c in offered if c not in CHANNELS]
    if unknown or len(set(offered)) != len(offered):
        raise ConfigError(
            f"{where}: identity {list(offered)}: name each of {', '.join(CHANNELS)} at most once "
            "(or leave it out: every channel is offered)"
        )
    return offered


def channels(direct_kernel: bool, offered: tuple[str, ...], wanted: str) -> tuple[str, ...]:
    """The identity channels a node of this image is given.

    ``direct_kernel``: the image boots a kernel dcnlab passes (identity on its
    command line, nothing else applies). ``offered``: what the image says it
    reads (empty: it does not say). ``wanted``: one of :data:`CHOICES`.
    """
    check_choice(wanted)
    if direct_kernel:
        if wanted != "auto":
            raise ConfigError(
                f"--dcn-identity {wanted}: this image boots its kernel directly and takes its identity from the "
                "kernel command line; identity channels apply to images that boot their own boot loader "
                "(leave it at auto)"
            )
        return (KERNEL,)
    if wanted != "auto":
        return (wanted,)
    return offered or CHANNELS


def describe(offered: tuple[str, ...]) -> str:
    """The channels offered and what each needs of the image, for errors."""
    return "; ".join(f"{c}: {WHAT_IT_NEEDS[c]}" for c in offered)


def login(
    image_user: str | None, image_key: Path | None, user: str, key: str | None, run_key: Path
) -> tuple[str, Path]:
    """Who the harness logs in as, with which private key.

    ``image_user``/``image_key``: the user baked into the image and the key
    it accepts (a recipe's ``[login] user``, kept beside the disk), for an
    image whose root does not log in over SSH. ``user``/``key``: what
    ``--dcn-login-user``/``--dcn-login-key`` ask for ("root", None: not
    asked). ``run_key``: the run's own key, which every channel gives root.
    """
    if user == "root" and key is None:
        if image_user is not None and image_key is not None:
            return image_user, image_key
        return "root", run_key
    if key is not None:
        path = Path(key).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"--login-key {key}: no such file; pass the private key whose public half the image's "
                f"{user} has in its authorized_keys"
            )
        return user, path.resolve()
    if user == image_user and image_key is not None:
        return user, image_key
    raise ConfigError(
        f"--login-user {user} needs --login-key PATH: the private key whose public half the image's {user} "
        "has in its authorized_keys (the run's own key is given to root only)"
    )
