"""Unit tests of recipe variants (``extends``, ``packages.exclude``), build-time
commands (``customize.run``) and the default recipe's workloads: no mmdebstrap, no VM."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dcnlab.core.errors import ConfigError, ImageError
from dcnlab.image import builder
from dcnlab.image.builder import load_recipe, recipe_digest

REPO_IMAGES = Path(builder.__file__).resolve().parent


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    """A private copy of the recipes and guest files, safe to edit."""
    shutil.copytree(REPO_IMAGES / "recipes", tmp_path / "recipes")
    shutil.copytree(REPO_IMAGES / "guest", tmp_path / "guest")
    return tmp_path / "recipes"


def test_default_recipe_has_podman_and_the_workloads() -> None:
    recipe = load_recipe("dcn-debian")
    for pkg in ("podman", "crun", "conmon", "netavark", "busybox-static", "resource-agents"):
        assert pkg in recipe.packages
    paths = {f.path for f in recipe.files}
    assert {"/usr/local/bin/dcn-http", "/etc/systemd/system/dcn-http.service"} <= paths
    assert recipe.run == ("/usr/local/lib/dcnlab/dcn-http-image", "/usr/local/lib/dcnlab/dcnlab-image-tidy")
    assert set(recipe.run) <= paths
    # Pacemaker starts the workload; nothing enables it at boot.
    assert "dcn-http.service" not in recipe.enable


def test_no_ra_variant_is_the_default_with_resource_agents_purged() -> None:
    base, variant = load_recipe("dcn-debian"), load_recipe("dcn-debian-no-ra")
    assert variant.name == "dcn-debian-no-ra"
    # Debian's pacemaker depends on resource-agents: installed, then forced out.
    assert variant.packages == base.packages
    assert variant.remove == ("resource-agents",)
    assert variant.exclude == ()
    assert variant.files == base.files
    for attr in ("enable", "disable", "mask", "run", "suite", "cmdline", "disk_size_mib", "mirror"):
        assert getattr(variant, attr) == getattr(base, attr), attr
    assert recipe_digest(variant) != recipe_digest(base)
    staged = {f.path: Path("/stage") / str(i) for i, f in enumerate(variant.files)}
    script = builder._customize_script(variant, staged)
    assert 'chroot "$root" dpkg --purge --force-depends resource-agents' in script


def test_variant_digest_follows_its_base(recipes: Path) -> None:
    before = recipe_digest(load_recipe(recipes / "dcn-debian-no-ra.toml"))
    base = recipes / "dcn-debian.toml"
    base.write_text(base.read_text().replace('disk_size = "3G"', 'disk_size = "4G"'))
    variant = load_recipe(recipes / "dcn-debian-no-ra.toml")
    assert variant.disk_size_mib == 4096
    assert recipe_digest(variant) != before


def test_variant_inherits_files_relative_to_the_base(tmp_path: Path, recipes: Path) -> None:
    elsewhere = tmp_path / "mine"
    elsewhere.mkdir()
    child = elsewhere / "my-dcn.toml"
    # No dcn-debian.toml beside it: the built-in recipe is the base.
    child.write_text('extends = "dcn-debian"\nname = "my-dcn"\n[packages]\nexclude = ["podman"]\n')
    recipe = load_recipe(child)
    assert "podman" not in recipe.packages
    assert {f.source for f in recipe.files} == {f.source for f in load_recipe("dcn-debian").files}
    assert all(f.source.is_file() for f in recipe.files)


def test_variant_tables_merge_and_arrays_replace(recipes: Path) -> None:
    child = recipes / "child.toml"
    child.write_text(
        'extends = "dcn-debian"\nname = "child"\n'
        '[units]\nmask = ["apt-daily.timer"]\n'
        "[customize]\nclean_apt_lists = false\n"
    )
    recipe, base = load_recipe(child), load_recipe(recipes / "dcn-debian.toml")
    assert recipe.mask == ("apt-daily.timer",)
    assert recipe.enable == base.enable  # the rest of [units] stays the base's
    assert not recipe.clean_apt_lists
    assert recipe.empty_machine_id  # the rest of [customize] too


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('extends = "dcn-debian"\nname = "x"\n[packages]\nexclude = ["no-such-pkg"]\n', "no-such-pkg"),
        ('extends = "nope"\nname = "x"\n', "names no recipe"),
        ('extends = "dcn-debian"\n', "needs a 'name' of its own"),
        ('extends = 3\nname = "x"\n', "'extends' must be a recipe name"),
        ('extends = "dcn-debian"\nname = "x"\n[customize]\nrun = ["relative/path"]\n', "customize.run"),
    ],
)
def test_variant_errors(recipes: Path, text: str, fragment: str) -> None:
    path = recipes / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment) as err:
        load_recipe(path)
    assert str(path) in str(err.value)


def test_extends_loop_is_config_error(recipes: Path) -> None:
    (recipes / "a.toml").write_text('extends = "b"\nname = "a"\n')
    (recipes / "b.toml").write_text('extends = "a"\nname = "b"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_recipe(recipes / "a.toml")


def test_customize_script_runs_commands_in_a_private_mount_namespace() -> None:
    recipe = load_recipe("dcn-debian")
    staged = {f.path: Path("/stage") / str(i) for i, f in enumerate(recipe.files)}
    script = builder._customize_script(recipe, staged)
    line = next(line for line in script.splitlines() if "dcn-http-image" in line and "unshare" in line)
    assert line.startswith("unshare --mount --propagation private sh -c ")
    assert 'mount --rbind "$1" "$1"' in line
    # after the files are installed, before the image is cleaned of host traces
    lines = script.splitlines()
    assert lines.index(line) > max(i for i, text in enumerate(lines) if text.startswith("install "))
    assert lines.index(line) < next(i for i, text in enumerate(lines) if "machine-id" in text)
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def _fake_rootfs(tmp_path: Path, recipe: builder.Recipe, installed: str) -> Path:
    rootfs = tmp_path / "rootfs"
    (rootfs / "var/lib/dpkg").mkdir(parents=True)
    (rootfs / "var/lib/dpkg/status").write_text(f"Package: {installed}\nStatus: install ok installed\nVersion: 1\n")
    (rootfs / "etc/ssh").mkdir(parents=True)
    (rootfs / "etc/machine-id").write_text("")
    for f in recipe.files:
        (rootfs / f.path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / f.path.lstrip("/")).write_bytes(f.content)
    return rootfs


def test_removed_package_still_installed_fails_the_build_check(tmp_path: Path) -> None:
    recipe = load_recipe("dcn-debian-no-ra")
    with pytest.raises(ImageError, match=r"resource-agents still installed although packages\.remove names it"):
        builder._check_rootfs(recipe, _fake_rootfs(tmp_path, recipe, "resource-agents"))
    builder._check_rootfs(recipe, _fake_rootfs(tmp_path / "ok", recipe, "pacemaker"))


def test_excluded_package_pulled_in_fails_the_build_check(tmp_path: Path) -> None:
    child = tmp_path / "child.toml"
    child.write_text('extends = "dcn-debian"\nname = "child"\n[packages]\nexclude = ["resource-agents"]\n')
    recipe = load_recipe(child)
    assert "resource-agents" not in recipe.packages
    with pytest.raises(ImageError, match="excluded by the recipe but installed anyway"):
        builder._check_rootfs(recipe, _fake_rootfs(tmp_path, recipe, "resource-agents"))


# ---------------------------------------------------------------- guest workload files


def test_workload_scripts_are_valid_sh_and_executable() -> None:
    for name in ("dcn-http", "dcn-http-image"):
        path = REPO_IMAGES / "guest" / name
        assert os.access(path, os.X_OK), name
        subprocess.run(["sh", "-n", str(path)], check=True)


def test_dcn_http_unit_cannot_be_enabled() -> None:
    unit = (REPO_IMAGES / "guest" / "dcn-http.service").read_text()
    assert "[Install]" not in unit.splitlines()
    assert "ExecStart=/usr/local/bin/dcn-http" in unit
    assert "Restart=no" in unit


def test_dcn_http_page_names_the_node(tmp_path: Path) -> None:
    """Run the script with busybox httpd swapped for echo: the page it wrote is what is served."""
    script = (REPO_IMAGES / "guest" / "dcn-http").read_text()
    for server in ("exec busybox httpd", "exec python3 -m http.server"):
        assert server in script
        script = script.replace(server, "exec echo")
    env = {**os.environ, "DCN_HTTP_ROOT": str(tmp_path / "www"), "DCN_HTTP_RUNTIME": "container"}
    subprocess.run(["sh", "-c", script], env=env, check=True, capture_output=True)
    hostname = Path("/proc/sys/kernel/hostname").read_text().strip()
    assert (tmp_path / "www" / "index.html").read_text() == f"dcn-http node={hostname} runtime=container\n"
