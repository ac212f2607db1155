"""Unit tests of the image builder's pure logic: no mmdebstrap, no VM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from dcnlab.core.errors import ConfigError, ImageError
from dcnlab.image import builder
from dcnlab.image.builder import BuiltImage, build_image, image_from_path, list_images, load_recipe, recipe_digest

REPO_IMAGES = Path(builder.__file__).resolve().parent


@pytest.fixture
def recipe_copy(tmp_path: Path) -> Path:
    """A private copy of the default recipe and its guest files, safe to edit."""
    shutil.copytree(REPO_IMAGES / "recipes", tmp_path / "recipes")
    shutil.copytree(REPO_IMAGES / "guest", tmp_path / "guest")
    return tmp_path / "recipes" / "dcn-debian.toml"


MINIMAL = """
name = "tiny"
suite = "bookworm"
disk_size = "1G"
[packages]
include = ["systemd-sysv"]
"""


def write_recipe(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


# ---------------------------------------------------------------- parsing


def test_default_recipe_loads_by_name() -> None:
    recipe = load_recipe("dcn-debian")
    assert recipe.name == "dcn-debian"
    assert recipe.suite == "bookworm"
    assert recipe.disk_size_mib == 3072
    for pkg in ("pacemaker", "pacemaker-cli-utils", "corosync", "pcs", "linux-image-cloud-amd64", "fence-virt"):
        assert pkg in recipe.packages
    assert "dcnlab-identity.service" in recipe.enable
    assert {"corosync.service", "pacemaker.service", "pcsd.service", "pcsd-ruby.service"} <= set(recipe.disable)
    assert recipe.fstab == ("/dev/vda / ext4 defaults 0 1",)
    assert recipe.cmdline.startswith("root=/dev/vda rw console=ttyS0")
    modes = {f.path: f.mode for f in recipe.files}
    assert modes["/usr/local/sbin/dcnlab-identity"] == 0o755
    assert modes["/etc/ssh/sshd_config.d/dcnlab.conf"] == 0o644


def test_minimal_recipe_gets_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, MINIMAL))
    assert recipe.variant == "apt"
    assert recipe.files == ()
    assert recipe.mirror.components == ("main",)
    assert recipe.empty_machine_id
    assert recipe.remove_ssh_host_keys


def test_unknown_recipe_name_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match="dcn-debian"):
        load_recipe("no-such-recipe")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("colour = 1\n", "'colour'"),  # prepended below: a top-level key
        ("[units]\nenabel = []\n", "'units.enabel'"),
        ("[mirror]\nfrom_hots = true\n", "'mirror.from_hots'"),
        ('[[files]]\npath = "/x"\nsource = "r.toml"\nowner = "root"\n', "'files[0].owner'"),
    ],
)
def test_unknown_key_names_key_and_file(tmp_path: Path, extra: str, key: str) -> None:
    path = write_recipe(tmp_path, extra + MINIMAL if not extra.startswith("[") else MINIMAL + extra)
    with pytest.raises(ConfigError) as err:
        load_recipe(path)
    assert key in str(err.value)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("replace", "by", "fragment"),
    [
        ('disk_size = "1G"', 'disk_size = "lots"', "disk_size"),
        ('disk_size = "1G"', 'disk_size = "100M"', "too small"),
        ('suite = "bookworm"', "suite = 12", "must be a str"),
        ('name = "tiny"', 'name = "Has Space"', "'name'"),
        ('include = ["systemd-sysv"]', 'include = ["ok", "BAD NAME"]', "packages.include"),
        ('include = ["systemd-sysv"]', 'include = "systemd-sysv"', "must be a list"),
        ('name = "tiny"\n', "", "missing key 'name'"),
    ],
)
def test_invalid_values_are_config_errors(tmp_path: Path, replace: str, by: str, fragment: str) -> None:
    assert replace in MINIMAL
    path = write_recipe(tmp_path, MINIMAL.replace(replace, by))
    with pytest.raises(ConfigError, match=fragment):
        load_recipe(path)


def test_bad_toml_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(write_recipe(tmp_path, "name = \n"))


def test_unit_both_enabled_and_disabled(tmp_path: Path) -> None:
    text = MINIMAL + '[units]\nenable = ["a.service"]\ndisable = ["a.service"]\n'
    with pytest.raises(ConfigError, match=r"a\.service"):
        load_recipe(write_recipe(tmp_path, text))


def test_missing_guest_file_is_config_error(tmp_path: Path) -> None:
    text = MINIMAL + '[[files]]\npath = "/etc/x"\nsource = "nope"\n'
    with pytest.raises(ConfigError, match=r"files\[0\]\.source"):
        load_recipe(write_recipe(tmp_path, text))


def test_relative_guest_path_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "src").write_text("x")
    text = MINIMAL + '[[files]]\npath = "etc/x"\nsource = "src"\n'
    with pytest.raises(ConfigError, match="absolute"):
        load_recipe(write_recipe(tmp_path, text))


def test_bad_mode_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "src").write_text("x")
    text = MINIMAL + '[[files]]\npath = "/etc/x"\nsource = "src"\nmode = "rwx"\n'
    with pytest.raises(ConfigError, match="octal"):
        load_recipe(write_recipe(tmp_path, text))


# ---------------------------------------------------------------- digest


def test_digest_is_stable(recipe_copy: Path) -> None:
    first = recipe_digest(load_recipe(recipe_copy))
    assert first == recipe_digest(load_recipe(recipe_copy))
    assert len(first) == 16
    int(first, 16)
    # Same content elsewhere: same image.
    assert first == recipe_digest(load_recipe("dcn-debian"))


def test_digest_changes_with_guest_file(recipe_copy: Path) -> None:
    before = recipe_digest(load_recipe(recipe_copy))
    script = recipe_copy.parent.parent / "guest" / "dcnlab-identity"
    script.write_text(script.read_text() + "# changed\n")
    assert recipe_digest(load_recipe(recipe_copy)) != before


def test_digest_changes_with_recipe_and_builder_version(recipe_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = recipe_digest(load_recipe(recipe_copy))
    recipe_copy.write_text(recipe_copy.read_text().replace('disk_size = "3G"', 'disk_size = "4G"'))
    changed = recipe_digest(load_recipe(recipe_copy))
    assert changed != before
    monkeypatch.setattr(builder, "BUILDER_VERSION", builder.BUILDER_VERSION + "-next")
    assert recipe_digest(load_recipe(recipe_copy)) != changed


def test_digest_changes_with_file_mode(recipe_copy: Path) -> None:
    before = recipe_digest(load_recipe(recipe_copy))
    text = recipe_copy.read_text().replace('mode = "0755"', 'mode = "0700"')
    recipe_copy.write_text(text)
    assert recipe_digest(load_recipe(recipe_copy)) != before


# ---------------------------------------------------------------- mirrors and build script


def test_mirror_lines_from_host_deb822(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    lines = builder.mirror_lines(load_recipe("dcn-debian"), apt_dir=tmp_path)
    assert lines == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://mirror.example/debian bookworm-updates main",
        "deb http://mirror.example/debian-security bookworm-security main",
    ]


def test_mirror_lines_fall_back_to_recipe(tmp_path: Path) -> None:
    lines = builder.mirror_lines(load_recipe("dcn-debian"), apt_dir=tmp_path)
    assert lines[0] == "deb http://deb.debian.org/debian bookworm main"
    assert lines[-1] == "deb http://deb.debian.org/debian-security bookworm-security main"


def test_customize_script_follows_recipe() -> None:
    recipe = load_recipe("dcn-debian")
    staged = {f.path: Path("/stage") / str(i) for i, f in enumerate(recipe.files)}
    script = builder._customize_script(recipe, staged)
    assert "systemctl enable systemd-networkd.service systemd-network-generator.service" in script
    assert "systemctl disable corosync.service pacemaker.service" in script
    assert ': > "$root/etc/machine-id"' in script
    assert 'rm -f "$root"/etc/ssh/ssh_host_*' in script
    assert "passwd --lock root" in script
    assert "'/dev/vda / ext4 defaults 0 1'" in script
    assert '-m 0755 /stage/0 "$root"/usr/local/sbin/dcnlab-identity' in script
    # The script must at least be valid sh.
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_phase_lines() -> None:
    assert builder._phase_of("I: installing remaining packages inside the chroot...") == "installing packages"
    assert builder._phase_of("I: running --customize-hook in shell: sh x") == "customizing"
    assert builder._phase_of("Get:1 http://deb.debian.org/debian bookworm InRelease") is None


# ---------------------------------------------------------------- cache


def fake_cached_image(cache: Path, name: str, digest: str) -> Path:
    image_dir = cache / "images" / f"{name}-{digest}"
    image_dir.mkdir(parents=True)
    for file in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (image_dir / file).write_bytes(b"x" * 10)
    manifest = {
        "format": builder.MANIFEST_FORMAT,
        "recipe": name,
        "digest": digest,
        "cmdline": "root=/dev/vda rw console=ttyS0",
        "built_seconds": 123.4,
        "files": {"disk": "disk.qcow2", "kernel": "vmlinuz", "initrd": "initrd.img"},
    }
    (image_dir / "manifest.json").write_text(json.dumps(manifest))
    return image_dir


def test_cache_hit_builds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = recipe_digest(load_recipe("dcn-debian"))
    image_dir = fake_cached_image(tmp_path, "dcn-debian", digest)

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not build")

    monkeypatch.setattr(builder, "_build_into", no_build)
    start = time.monotonic()
    image = build_image("dcn-debian", cache=tmp_path)
    assert time.monotonic() - start < 1.0
    assert image == BuiltImage(
        recipe="dcn-debian",
        digest=digest,
        disk=image_dir / "disk.qcow2",
        kernel=image_dir / "vmlinuz",
        initrd=image_dir / "initrd.img",
        cmdline="root=/dev/vda rw console=ttyS0",
        built_seconds=123.4,
    )
    assert list_images(tmp_path) == [image]


def test_incomplete_cache_entry_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = recipe_digest(load_recipe("dcn-debian"))
    image_dir = fake_cached_image(tmp_path, "dcn-debian", digest)
    (image_dir / "initrd.img").unlink()
    assert list_images(tmp_path) == []

    class Built(Exception):
        pass

    def fake_build(*args: object, **kwargs: object) -> None:
        raise Built

    monkeypatch.setattr(builder, "_preflight", lambda root: None)
    monkeypatch.setattr(builder, "_build_into", fake_build)
    with pytest.raises(Built):
        build_image("dcn-debian", cache=tmp_path)
    # The failed build left no temp dir behind.
    leftovers = [p.name for p in (tmp_path / "images").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_failed_build_is_image_error_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_build(recipe: object, digest: str, work: Path, *args: object) -> None:
        (work / "rootfs" / "etc").mkdir(parents=True)
        (work / "build.log").write_text("line\n" * 30 + "E: boom\n")
        raise ImageError("mmdebstrap failed")

    monkeypatch.setattr(builder, "_preflight", lambda root: None)
    monkeypatch.setattr(builder, "_build_into", failing_build)
    with pytest.raises(ImageError, match="build failed") as err:
        build_image("dcn-debian", cache=tmp_path)
    kept = tmp_path / "images" / "logs"
    assert str(kept) in str(err.value)
    assert [p for p in (tmp_path / "images").iterdir() if p.name.startswith(".tmp-")] == []


def test_list_images_empty_cache(tmp_path: Path) -> None:
    assert list_images(tmp_path / "nothing-here") == []


def test_dpkg_versions(tmp_path: Path) -> None:
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    status.write_text(
        "Package: pacemaker\nStatus: install ok installed\nVersion: 2.1.5-1+deb12u1\nDescription: x\n"
        " more text: with colon\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
        "Package: pcs\nStatus: install ok installed\nVersion: 0.11.5-1\n"
    )
    assert builder._dpkg_versions(tmp_path) == {"pacemaker": "2.1.5-1+deb12u1", "pcs": "0.11.5-1"}


# ---------------------------------------------------------------- user images


def test_image_from_path_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.qcow2"
    with pytest.raises(ImageError, match="does not exist") as err:
        image_from_path(missing)
    assert str(missing) in str(err.value)


def test_image_from_path_rejects_text_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a disk image\n" * 100)
    with pytest.raises(ImageError, match="not a disk image") as err:
        image_from_path(text)
    message = str(err.value)
    assert str(text) in message
    assert "\n" not in message


def test_image_from_path_accepts_qcow2(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    (tmp_path / "vmlinuz").write_bytes(b"k")
    image = image_from_path(disk)
    assert image.disk == disk
    assert image.kernel == tmp_path / "vmlinuz"
    assert image.initrd is None
    assert image.cmdline == builder.DEFAULT_CMDLINE
    assert len(image.digest) == 16
    assert image == image_from_path(disk)


def test_image_from_path_rejects_other_formats(tmp_path: Path) -> None:
    disk = tmp_path / "disk.vdi"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(disk), "16M"], check=True)
    with pytest.raises(ImageError, match="qemu-img convert -O qcow2"):
        image_from_path(disk)


def test_image_from_path_accepts_raw_with_mbr(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    data = bytearray(1024 * 1024)
    data[510:512] = b"\x55\xaa"
    disk.write_bytes(bytes(data))
    assert image_from_path(disk, cmdline="console=ttyS0").cmdline == "console=ttyS0"


def test_image_from_path_missing_kernel(tmp_path: Path) -> None:
    disk = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    with pytest.raises(ImageError, match="kernel"):
        image_from_path(disk, kernel=tmp_path / "bzImage")


# ---------------------------------------------------------------- guest script


def run_identity(tmp_path: Path, cmdline: str) -> subprocess.CompletedProcess[str]:
    """Run the guest's identity script with its paths moved under tmp_path."""
    script = (REPO_IMAGES / "guest" / "dcnlab-identity").read_text()
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    script = script.replace("/proc/cmdline", str(tmp_path / "cmdline")).replace("/root/.ssh", str(tmp_path / "ssh"))
    # The build host has no hacluster user; make `id` say so either way.
    script = script.replace("id hacluster", "id dcnlab-no-such-user")
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)


def test_identity_script_installs_key(tmp_path: Path) -> None:
    import base64

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests dcnlab@test"
    pw = base64.b64encode(b"s3cret pw").decode()
    result = run_identity(
        tmp_path, f"root=/dev/vda dcnlab.ssh_key={base64.b64encode(key.encode()).decode()} dcnlab.hacluster_pw={pw}"
    )
    auth = tmp_path / "ssh" / "authorized_keys"
    assert auth.read_text() == key + "\n"
    assert oct(auth.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "ssh").stat().st_mode & 0o777) == "0o700"
    assert "s3cret" not in result.stdout + result.stderr
    assert key not in result.stdout + result.stderr


def test_identity_script_ignores_absent_and_bad_args(tmp_path: Path) -> None:
    run_identity(tmp_path, "root=/dev/vda console=ttyS0")
    assert not (tmp_path / "ssh").exists()
    result = run_identity(tmp_path, "dcnlab.ssh_key=bm90IGEga2V5")  # "not a key"
    assert not (tmp_path / "ssh" / "authorized_keys").exists()
    assert "ignored" in result.stderr


def test_guest_files_in_repo_are_executable_where_needed() -> None:
    assert os.access(REPO_IMAGES / "guest" / "dcnlab-identity", os.X_OK)


# ---------------------------------------------------------------- concurrency


def _fake_build_into(recipe: object, digest: str, work: Path, *args: object) -> dict[str, object]:
    """Stands in for mmdebstrap: slow enough that the two callers overlap."""
    counter = work.parent.parent / "builds"
    with counter.open("a") as fh:
        fh.write(f"{os.getpid()}\n")
    time.sleep(1.5)
    for file in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (work / file).write_bytes(b"x" * 10)
    return {
        "format": builder.MANIFEST_FORMAT,
        "recipe": "dcn-debian",
        "digest": digest,
        "cmdline": "root=/dev/vda rw console=ttyS0",
        "built_seconds": 1.5,
        "files": {"disk": "disk.qcow2", "kernel": "vmlinuz", "initrd": "initrd.img"},
    }


def _build_in_child(cache: str, out: str) -> None:
    builder._build_into = _fake_build_into  # type: ignore[assignment]
    builder._preflight = lambda root: None
    image = build_image("dcn-debian", cache=Path(cache))
    Path(out).write_text(str(image.disk))


def test_concurrent_builds_build_once(tmp_path: Path) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_build_in_child, args=(str(tmp_path), str(tmp_path / f"out{i}"))) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len((tmp_path / "builds").read_text().splitlines()) == 1
    assert (tmp_path / "out0").read_text() == (tmp_path / "out1").read_text()
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert [n for n in names if n.startswith(".tmp-")] == []
    assert f"dcn-debian-{recipe_digest(load_recipe('dcn-debian'))}" in names


def test_the_smbios_image_keeps_pcsd_enabled_as_rhde_ships_it() -> None:
    # dcn-debian leaves pcsd off (the harness never uses it); the RHDE-like
    # image keeps it on, so that stopping it on every boot stays exercised.
    base, smbios = load_recipe("dcn-debian"), load_recipe("dcn-debian-disk-smbios")
    assert "pcsd.service" not in base.enable
    assert "pcsd.service" in smbios.enable
    assert set(smbios.disable) == set(base.disable) - {"pcsd.service", "pcsd-ruby.service"}
