"""Build, cache and describe the guest disk images dcnlab boots.

A recipe (``dcnlab/image/recipes/NAME.toml``) is data: suite, packages, units, the
guest files to install. ``build_image`` turns it into a qcow2 base image plus
the kernel and initrd for direct kernel boot, cached under
``cache_dir()/images/NAME-DIGEST``. The digest covers everything that decides
the image's content that lives in this repository (recipe bytes, guest files,
builder version), so editing any of them builds a new image and an unchanged
recipe is a sub-second cache hit. Package versions are *not* in the digest:
the manifest records which ones a cached image holds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcnlab.core import paths
from dcnlab.core.errors import CommandError, ConfigError, ImageError
from dcnlab.core.keys import generate_key
from dcnlab.core.proc import run_local
from dcnlab.image.identity import check_offered

# Bump when a change to this file changes what a build produces, so cached
# images made by the old code stop matching.
BUILDER_VERSION = "1"
# The same for what only disk-booted images get (the disk layout, its ESP,
# the GRUB install boot); hashed for those alone, so other digests stay.
DISK_BUILDER_VERSION = "2"

IMAGES_DIR = Path(__file__).resolve().parent
RECIPES_DIR = IMAGES_DIR / "recipes"
DEFAULT_RECIPE = "dcn-debian"

BUILD_TIMEOUT = 45 * 60.0
PROGRESS_EVERY = 15.0
# Room for the rootfs, the raw filesystem and the qcow2 at the same time.
MIN_FREE_BYTES = 3 * 1024**3
DIGEST_LEN = 16
MANIFEST_FORMAT = 1
# Used for user-supplied images that carry no manifest.
DEFAULT_CMDLINE = "root=/dev/vda rw console=ttyS0"

# How an image boots (recipe [boot] mode); see Recipe.boot.
BOOT_MODES = ("kernel", "disk")
# FAT32 needs 65525 clusters: 33 MiB with 512-byte clusters; round up.
MIN_ESP_MIB = 34
# The GRUB install of a disk-booted image runs in a one-shot QEMU boot of the
# image itself (grub-install wants a block device; the build has a file).
GRUB_ONCE = "/usr/local/lib/dcnlab/grub-install-once"
GRUB_DONE = "DCNLAB-GRUB-INSTALLED"
GRUB_TIMEOUT = 900.0  # under TCG: a boot, two grub-installs, update-grub

Progress = Callable[[str], None]

_VARIANTS = frozenset(
    {"extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important", "debootstrap", "standard"}
)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_UNIT_RE = re.compile(r"^[A-Za-z0-9@_.:\\-]+\.(service|socket|timer|target|path|mount|automount|swap|slice)$")
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SIZE_RE = re.compile(r"^([1-9][0-9]*)([MG])$")
_URI_RE = re.compile(r"^(https?|file):/\S+$")
_COMPONENT_RE = re.compile(r"^[a-z0-9-]+$")


# --------------------------------------------------------------------------- recipe


@dataclass(frozen=True)
class Mirror:
    from_host: bool
    debian: str
    security: str
    components: tuple[str, ...]
    updates: bool
    security_updates: bool


@dataclass(frozen=True)
class GuestFile:
    path: str  # absolute path inside the image
    source: Path  # where it came from, for messages
    mode: int
    # Read once at load time so the digest and the build see the same bytes.
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    suite: str
    variant: str
    disk_size_mib: int
    cmdline: str
    hostname: str
    mirror: Mirror
    packages: tuple[str, ...]
    install_recommends: bool
    path_exclude: tuple[str, ...]
    path_include: tuple[str, ...]
    enable: tuple[str, ...]
    disable: tuple[str, ...]
    mask: tuple[str, ...]
    fstab: tuple[str, ...]
    empty_machine_id: bool
    lock_root_password: bool
    remove_ssh_host_keys: bool
    clean_apt_lists: bool
    files: tuple[GuestFile, ...]
    path: Path
    raw: bytes = field(repr=False)
    # Packages the recipe removed from what it extends: the build fails if a
    # dependency still pulls one in, since the variant would then be a lie.
    exclude: tuple[str, ...] = ()
    # Packages forced out after installation (dpkg --purge --force-depends),
    # even when installed packages depend on them: a deliberately broken image,
    # for negative tests. The build checks they are gone.
    remove: tuple[str, ...] = ()
    # Executables run inside the finished root filesystem (chrooted, in a
    # private mount namespace) after files and units are in place.
    run: tuple[str, ...] = ()
    # The bytes of every recipe this one extends, nearest first (for the digest).
    base_raw: tuple[bytes, ...] = field(default=(), repr=False)
    # How the image boots: "kernel" (direct kernel boot; kernel and initrd
    # kept beside the disk) or "disk" (its own GPT with a BIOS boot partition
    # and an EFI system partition, GRUB for both firmwares, no kernel kept).
    boot: str = "kernel"
    esp_size_mib: int = 64
    # The identity channels a disk-booted image reads (dcnlab.image.identity);
    # empty: it does not say, and a fleet offers every channel.
    identity: tuple[str, ...] = ()
    # A user the harness logs in as (with a key made by the build and kept
    # beside the disk; password '*', sudo without one), for an image whose
    # root does not log in over SSH. None: the harness logs in as root.
    login_user: str | None = None


_MISSING: Any = object()


class _Table:
    """One TOML table being validated: every key is either taken or an error."""

    def __init__(self, data: object, where: str, file: Path, allowed: Sequence[str]) -> None:
        self.file = file
        self.where = where
        if not isinstance(data, dict):
            raise self.error(f"'{where or 'top level'}' must be a table")
        # Unknown keys first, so a typo reads as a typo, not as "missing key".
        for key in data:
            if key not in allowed:
                raise ConfigError(f"{file}: unknown key '{self.key(key)}'; known keys here: {', '.join(allowed)}")
        self.data: dict[str, object] = data

    def key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {problem}")

    def get(self, key: str, kind: type, default: object) -> Any:
        if key not in self.data:
            if default is _MISSING:
                raise self.error(f"missing key '{self.key(key)}'")
            return default
        value = self.data[key]
        # bool is an int subclass; keep them apart.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(f"'{self.key(key)}' must be a {kind.__name__}, not {type(value).__name__}")
        return value

    def string(self, key: str, default: object = _MISSING, pattern: re.Pattern[str] | None = None) -> str:
        value: str = self.get(key, str, default)
        if pattern is not None and not pattern.match(value):
            raise self.error(f"'{self.key(key)}' = {value!r} is not valid (expected {pattern.pattern})")
        if "\n" in value:
            raise self.error(f"'{self.key(key)}' must be one line")
        return value

    def boolean(self, key: str, default: object = _MISSING) -> bool:
        value: bool = self.get(key, bool, default)
        return value

    def strings(self, key: str, default: object = _MISSING, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
        value: list[object] = self.get(key, list, default)
        out: list[str] = []
        for item in value:
            if not isinstance(item, str) or "\n" in item:
                raise self.error(f"'{self.key(key)}' must be a list of one-line strings, got {item!r}")
            if pattern is not None and not pattern.match(item):
                raise self.error(f"'{self.key(key)}' has invalid entry {item!r} (expected {pattern.pattern})")
            out.append(item)
        return tuple(out)

    def table(self, key: str, allowed: Sequence[str]) -> _Table:
        return _Table(self.data.get(key, {}), self.key(key), self.file, allowed)

    def tables(self, key: str, allowed: Sequence[str]) -> list[_Table]:
        value: list[object] = self.get(key, list, [])
        return [_Table(item, f"{self.key(key)}[{i}]", self.file, allowed) for i, item in enumerate(value)]


def _parse_mode(table: _Table, key: str) -> int:
    value = table.data.get(key, "0644")
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{3,4}", value):
        mode = int(value, 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value  # TOML 0o755
    else:
        raise table.error(f"'{table.key(key)}' must be an octal string like \"0644\", got {value!r}")
    if not 0 <= mode <= 0o7777:
        raise table.error(f"'{table.key(key)}' = {value!r} is out of range")
    return mode


def _parse_files(top: _Table, recipe_dir: Path) -> tuple[GuestFile, ...]:
    files: list[GuestFile] = []
    seen: set[str] = set()
    for entry in top.tables("files", ("path", "source", "mode")):
        dest = entry.string("path")
        if not dest.startswith("/") or ".." in dest.split("/") or dest.endswith("/"):
            raise entry.error(f"'{entry.key('path')}' = {dest!r} must be an absolute file path inside the image")
        if dest in seen:
            raise entry.error(f"'{entry.key('path')}' = {dest!r} is installed twice")
        seen.add(dest)
        source = (recipe_dir / entry.string("source")).resolve()
        if not source.is_file():
            raise entry.error(
                f"'{entry.key('source')}' names {source}, which is not a file (sources are relative to the recipe file)"
            )
        files.append(GuestFile(dest, source, _parse_mode(entry, "mode"), source.read_bytes()))
    return tuple(files)


_TOP_KEYS = (
    "name",
    "extends",
    "description",
    "suite",
    "variant",
    "disk_size",
    "cmdline",
    "hostname",
    "mirror",
    "packages",
    "units",
    "customize",
    "files",
    "boot",
    "login",
)
LOGIN_KEY = "login_ed25519"  # beside the disk: the private key of the image's login user


def _toml(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (arrays included) replaces the base's."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _base_path(name: str, path: Path) -> Path:
    beside = path.parent / f"{name}.toml"
    if beside.is_file():
        return beside
    builtin = RECIPES_DIR / f"{name}.toml"
    if builtin.is_file():
        return builtin
    raise ConfigError(
        f"{path}: 'extends' = {name!r} names no recipe (looked for {beside} and {builtin}); "
        f"known recipes: {', '.join(available_recipes()) or '(none)'}"
    )


def _resolve(raw: bytes, path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], tuple[bytes, ...]]:
    """The recipe's TOML merged over everything it ``extends``, plus the bases' bytes.

    File sources of a base stay relative to the base's own directory, so they
    are made absolute before the merge.
    """
    data = _toml(raw, path)
    if "extends" not in data:
        return data, ()
    name = data.pop("extends")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{path}: 'extends' must be a recipe name like \"dcn-debian\", not {name!r}")
    base_path = _base_path(name, path).resolve()
    if base_path in (*chain, path.resolve()):
        loop = " -> ".join(str(p) for p in (*chain, path.resolve(), base_path))
        raise ConfigError(f"{path}: recipes extend each other in a loop: {loop}")
    try:
        base_bytes = base_path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the recipe it extends, {base_path}: {err.strerror}") from err
    base, deeper = _resolve(base_bytes, base_path, (*chain, path.resolve()))
    if "name" not in data or data["name"] == base.get("name"):
        raise ConfigError(f"{path}: a recipe that extends {name!r} needs a 'name' of its own")
    files = base.get("files")
    if isinstance(files, list):
        base["files"] = [
            {**entry, "source": str((base_path.parent / entry["source"]).resolve())}
            if isinstance(entry, dict) and isinstance(entry.get("source"), str)
            else entry
            for entry in files
        ]
    merged = _merge(base, data)
    # A variant's [[files]] come on top of its base's (the same path replaces
    # the base's entry), as its [packages] add does for packages.
    own = data.get("files")
    if isinstance(files, list) and isinstance(own, list):
        paths = {entry.get("path") for entry in own if isinstance(entry, dict)}
        kept = [e for e in base["files"] if not (isinstance(e, dict) and e.get("path") in paths)]
        merged["files"] = [*kept, *own]
    return merged, (base_bytes, *deeper)


def parse_recipe(raw: bytes, path: Path) -> Recipe:
    """Validate recipe bytes read from ``path``; every problem is a ConfigError naming the file.

    A recipe may ``extends = "NAME"`` another (looked up beside it, then among
    the built-in recipes): its tables are merged over the base's, other values
    replace the base's, but its ``[[files]]`` add to the base's (a path it
    names again replaces the base's entry). ``packages.add`` puts more names
    after the merged ``packages.include``; ``packages.exclude`` drops names
    from it (the build fails if a dependency still pulls one in);
    ``packages.remove`` forces installed packages out afterwards, dependencies
    or not, for deliberately broken test images.
    """
    data, base_raw = _resolve(raw, path)
    top = _Table(data, "", path, _TOP_KEYS)
    size = top.string("disk_size", pattern=_SIZE_RE)
    size_match = _SIZE_RE.match(size)
    assert size_match is not None  # checked by string() above
    number, unit = size_match.groups()
    disk_size_mib = int(number) * (1024 if unit == "G" else 1)
    if disk_size_mib < 512:
        raise top.error(f"'disk_size' = {size!r} is too small for a bootable system (use at least 512M)")
    variant = top.string("variant", "apt")
    if variant not in _VARIANTS:
        raise top.error(f"'variant' = {variant!r} is not an mmdebstrap variant ({', '.join(sorted(_VARIANTS))})")

    mirror_t = top.table("mirror", ("from_host", "debian", "security", "components", "updates", "security_updates"))
    mirror = Mirror(
        from_host=mirror_t.boolean("from_host", True),
        debian=mirror_t.string("debian", "http://deb.debian.org/debian", _URI_RE),
        security=mirror_t.string("security", "http://deb.debian.org/debian-security", _URI_RE),
        components=mirror_t.strings("components", ["main"], _COMPONENT_RE),
        updates=mirror_t.boolean("updates", True),
        security_updates=mirror_t.boolean("security_updates", True),
    )
    if not mirror.components:
        raise mirror_t.error("'mirror.components' must name at least one component")

    pkg_t = top.table(
        "packages", ("include", "add", "exclude", "remove", "install_recommends", "path_exclude", "path_include")
    )
    include = pkg_t.strings("include", pattern=_PACKAGE_RE)
    include += tuple(p for p in pkg_t.strings("add", [], _PACKAGE_RE) if p not in include)
    exclude = pkg_t.strings("exclude", [], _PACKAGE_RE)
    stray = sorted(set(exclude) - set(include))
    if stray:
        raise pkg_t.error(
            f"'packages.exclude' names {', '.join(stray)}, which 'packages.include' does not list "
            f"(it lists: {', '.join(include)})"
        )
    packages = tuple(p for p in include if p not in exclude)
    remove = pkg_t.strings("remove", [], _PACKAGE_RE)
    absolute = re.compile(r"^/\S+$")

    units_t = top.table("units", ("enable", "disable", "mask"))
    enable = units_t.strings("enable", [], _UNIT_RE)
    disable = units_t.strings("disable", [], _UNIT_RE)
    mask = units_t.strings("mask", [], _UNIT_RE)
    clash = (set(enable) & set(disable)) | (set(enable) & set(mask))
    if clash:
        raise units_t.error(f"units both enabled and disabled/masked: {', '.join(sorted(clash))}")

    cust_t = top.table(
        "customize",
        ("fstab", "empty_machine_id", "lock_root_password", "remove_ssh_host_keys", "clean_apt_lists", "run"),
    )
    files = _parse_files(top, path.parent)
    run = cust_t.strings("run", [], re.compile(r"^/[A-Za-z0-9._/+-]+$"))
    boot_t = top.table("boot", ("mode", "esp_size", "identity"))
    boot = boot_t.string("mode", "kernel")
    if boot not in BOOT_MODES:
        raise boot_t.error(f"'boot.mode' = {boot!r}: use one of {', '.join(BOOT_MODES)}")
    esp = boot_t.string("esp_size", "64M", _SIZE_RE)
    esp_match = _SIZE_RE.match(esp)
    assert esp_match is not None  # checked by string() above
    esp_size_mib = int(esp_match.group(1)) * (1024 if esp_match.group(2) == "G" else 1)
    if not MIN_ESP_MIB <= esp_size_mib <= disk_size_mib // 4:
        raise boot_t.error(f"'boot.esp_size' = {esp!r}: use {MIN_ESP_MIB}M (FAT32's least) to a quarter of disk_size")
    identity = boot_t.strings("identity", [], re.compile(r"^[a-z-]+$"))
    if identity and boot != "disk":
        raise boot_t.error(
            "'boot.identity' applies to boot.mode = \"disk\" (a kernel boot's identity is its command line)"
        )
    try:
        check_offered(identity, "'boot.identity'")
    except ConfigError as err:
        raise boot_t.error(str(err).removeprefix("'boot.identity': ")) from err
    login_t = top.table("login", ("user",))
    login_user = login_t.string("user", "", re.compile(r"^([a-z_][a-z0-9_-]{0,31})?$")) or None
    if login_user == "root":
        raise login_t.error("'login.user' = \"root\": name another user (root logs in with the run's key anyway)")
    if login_user is not None and "sudo" not in packages:
        raise login_t.error(f"'login.user' = {login_user!r} runs commands as root by sudo: add \"sudo\" to packages")
    return Recipe(
        name=top.string("name", pattern=_NAME_RE),
        description=top.string("description", ""),
        suite=top.string("suite", pattern=_SUITE_RE),
        variant=variant,
        disk_size_mib=disk_size_mib,
        cmdline=top.string("cmdline", DEFAULT_CMDLINE),
        hostname=top.string("hostname", "localhost", _HOSTNAME_RE),
        mirror=mirror,
        packages=packages,
        install_recommends=pkg_t.boolean("install_recommends", False),
        path_exclude=pkg_t.strings("path_exclude", [], absolute),
        path_include=pkg_t.strings("path_include", [], absolute),
        enable=enable,
        disable=disable,
        mask=mask,
        fstab=cust_t.strings("fstab", []),
        empty_machine_id=cust_t.boolean("empty_machine_id", True),
        lock_root_password=cust_t.boolean("lock_root_password", True),
        remove_ssh_host_keys=cust_t.boolean("remove_ssh_host_keys", True),
        clean_apt_lists=cust_t.boolean("clean_apt_lists", True),
        files=files,
        path=path,
        raw=raw,
        exclude=exclude,
        remove=remove,
        run=run,
        base_raw=base_raw,
        boot=boot,
        esp_size_mib=esp_size_mib,
        identity=identity,
        login_user=login_user,
    )


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Load a recipe by name (``dcnlab/image/recipes/NAME.toml``) or by file path."""
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or text.endswith(".toml"):
        path = Path(name_or_path).expanduser().resolve()
    else:
        path = RECIPES_DIR / f"{text}.toml"
        if not path.is_file():
            raise ConfigError(
                f"no image recipe named {text!r}; known recipes: {', '.join(available_recipes()) or '(none)'}"
                f" (in {RECIPES_DIR}), or pass a path to a .toml file"
            )
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read image recipe {path}: {err.strerror}") from err
    return parse_recipe(raw, path)


def recipe_digest(recipe: Recipe) -> str:
    """First 16 hex digits of a sha256 over what decides the image's content."""
    h = hashlib.sha256()

    # Length-prefix every part so no two different inputs hash the same.
    def part(data: bytes) -> None:
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)

    part(b"dcnlab-image")
    part(BUILDER_VERSION.encode())
    part(recipe.raw)
    if recipe.boot == "disk":
        part(DISK_BUILDER_VERSION.encode())
    # Only recipes that extend another hash more, so other digests stay as they were.
    for base in recipe.base_raw:
        part(base)
    for f in sorted(recipe.files, key=lambda f: f.path):
        part(f.path.encode())
        part(f"{f.mode:o}".encode())
        part(f.content)
    return h.hexdigest()[:DIGEST_LEN]


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class BuiltImage:
    recipe: str  # recipe name
    digest: str  # first 16 hex of the recipe hash
    disk: Path  # qcow2 base image
    kernel: Path | None  # vmlinuz for direct kernel boot
    initrd: Path | None
    cmdline: str  # kernel args the image needs
    built_seconds: float  # how long the build took (0 if unknown)
    # Identity channels the image reads (dcnlab.image.identity); empty: unknown.
    identity: tuple[str, ...] = ()
    # The user baked into the image for the harness to log in as, and its
    # private key (a recipe's [login]); None: root, with the run's key.
    login_user: str | None = None
    login_key: Path | None = None


def _images_root(cache: Path | None) -> Path:
    return (cache if cache is not None else paths.cache_dir()) / "images"


def _from_manifest(image_dir: Path, expect_digest: str | None = None) -> BuiltImage | None:
    """The cached image in ``image_dir``, or None when it is absent or incomplete."""
    try:
        manifest = json.loads((image_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    if expect_digest is not None and manifest.get("digest") != expect_digest:
        return None
    files = manifest.get("files", {})
    try:
        disk = image_dir / files["disk"]
        kernel = image_dir / files["kernel"] if files.get("kernel") else None
        initrd = image_dir / files["initrd"] if files.get("initrd") else None
        image = BuiltImage(
            recipe=str(manifest["recipe"]),
            digest=str(manifest["digest"]),
            disk=disk,
            kernel=kernel,
            initrd=initrd,
            cmdline=str(manifest["cmdline"]),
            built_seconds=float(manifest.get("built_seconds", 0.0)),
            identity=tuple(str(c) for c in manifest.get("identity", ())),
            login_user=str(manifest["login"]["user"]) if manifest.get("login") else None,
            login_key=image_dir / files["login_key"] if files.get("login_key") else None,
        )
    except (KeyError, TypeError, ValueError):
        return None
    for path in (image.disk, image.kernel, image.initrd, image.login_key):
        if path is not None and not (path.is_file() and path.stat().st_size > 0):
            return None
    return image


def list_images(cache: Path | None = None) -> list[BuiltImage]:
    """Every complete image in the cache, by recipe name then digest."""
    root = _images_root(cache)
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue  # temp dirs, locks, logs
        image = _from_manifest(entry)
        if image is not None:
            found.append(image)
    return sorted(found, key=lambda i: (i.recipe, i.digest))


def read_manifest(image: BuiltImage) -> dict[str, Any]:
    """The manifest of a cached image (package versions, sizes, build time)."""
    data: dict[str, Any] = json.loads((image.disk.parent / "manifest.json").read_text())
    return data


# --------------------------------------------------------------------------- user images

_USER_DIGEST_BYTES = 16 * 1024 * 1024


def _looks_like_disk(path: Path) -> bool:
    """Whether a raw file starts like a disk: a partition table or a filesystem.

    qemu-img calls *any* file "raw", so this is what tells a disk from a text file.
    """
    with path.open("rb") as fh:
        head = fh.read(0x10048)
    checks = (
        (510, b"\x55\xaa"),  # MBR / protective MBR
        (512, b"EFI PART"),  # GPT header
        (1080, b"\x53\xef"),  # ext2/3/4 superblock magic
        (0, b"XFSB"),
        (0x10040, b"_BHRfS_M"),  # btrfs
    )
    return any(head[off : off + len(magic)] == magic for off, magic in checks)


def _check_qcow2(disk: Path) -> None:
    """``qemu-img check``: a qcow2 whose header reads fine can still have its
    data cut off or its backing file missing, which only shows as a guest
    that never boots. Exit 0: clean; 3: leaked clusters only (harmless);
    2: corrupt; 1: could not be checked (e.g. the backing file is missing)."""
    # -U: the image may be in use by a running VM, which holds qemu's lock.
    result = run_local(["qemu-img", "check", "-U", "--output=json", disk], timeout=120, check=False)
    if result.exit_code in (0, 3):
        return
    what = "is corrupt" if result.exit_code == 2 else "cannot be checked"
    detail = (result.stderr.strip() or result.stdout.strip()).splitlines()
    raise ImageError(
        f"{disk} {what} (qemu-img check exit {result.exit_code}: {detail[-1] if detail else 'no output'}); "
        "pass a complete image (copy or build it again; a qcow2 overlay needs its backing file)"
    )


def image_from_path(
    disk: Path,
    kernel: Path | None = None,
    initrd: Path | None = None,
    cmdline: str | None = None,
) -> BuiltImage:
    """Describe a user-supplied disk image, checking it is one.

    With no kernel given, ``vmlinuz`` and ``initrd.img`` next to the disk (the
    cache's layout) are used when present; otherwise the VM boots the disk's
    own boot loader.
    """
    disk = Path(disk).expanduser().resolve()
    if not disk.is_file():
        raise ImageError(f"disk image {disk} does not exist; pass the path of a qcow2 or raw image file")
    try:
        # -U: the image may be in use by a running VM, which holds qemu's lock.
        result = run_local(["qemu-img", "info", "-U", "--output=json", disk], timeout=60)
        info = json.loads(result.stdout)
    except CommandError as err:
        raise ImageError(
            f"{disk} is not a disk image qemu-img can read ({_last_line(err)}); pass a qcow2 or raw image"
        ) from err
    except ValueError as err:
        raise ImageError(f"qemu-img printed no JSON for {disk}; check the qemu-utils install") from err
    fmt = info.get("format")
    if fmt not in ("qcow2", "raw"):
        raise ImageError(
            f"{disk} is a {fmt} image; convert it with `qemu-img convert -O qcow2 {disk} DISK.qcow2` and pass that"
        )
    if fmt == "raw" and not _looks_like_disk(disk):
        raise ImageError(
            f"{disk} is not a disk image (no partition table or filesystem found); "
            "pass a qcow2 or raw disk image, e.g. one from build_image()"
        )
    if fmt == "qcow2":
        _check_qcow2(disk)

    manifest_image = _from_manifest(disk.parent)
    if kernel is None and initrd is None and (disk.parent / "vmlinuz").is_file():
        kernel = disk.parent / "vmlinuz"
        if (disk.parent / "initrd.img").is_file():
            initrd = disk.parent / "initrd.img"
    for what, path in (("kernel", kernel), ("initrd", initrd)):
        if path is not None and not Path(path).is_file():
            raise ImageError(f"{what} {path} for disk {disk} does not exist; pass an existing file or none")
    if cmdline is None:
        cmdline = manifest_image.cmdline if manifest_image is not None else DEFAULT_CMDLINE

    h = hashlib.sha256()
    with disk.open("rb") as fh:
        h.update(fh.read(_USER_DIGEST_BYTES))
    h.update(str(disk.stat().st_size).encode())
    if manifest_image is not None:
        name = manifest_image.recipe
    else:
        name = disk.parent.name if disk.stem == "disk" else disk.stem
    return BuiltImage(
        recipe=name,
        digest=h.hexdigest()[:DIGEST_LEN],
        disk=disk,
        kernel=Path(kernel).resolve() if kernel is not None else None,
        initrd=Path(initrd).resolve() if initrd is not None else None,
        cmdline=cmdline,
        built_seconds=0.0,
        identity=manifest_image.identity if manifest_image is not None else (),
        login_user=manifest_image.login_user if manifest_image is not None else None,
        login_key=manifest_image.login_key if manifest_image is not None else None,
    )


def _last_line(err: CommandError) -> str:
    stderr = getattr(err.result, "stderr", "") or str(err)
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# --------------------------------------------------------------------------- mirrors


def _host_sources(apt_dir: Path) -> list[tuple[str, list[str]]]:
    """(URI, suites) of every enabled binary source in the host's apt config."""
    found: list[tuple[str, list[str]]] = []
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    found.append((words[1], [words[2]]))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            text = path.read_text()
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                last = ""
                for line in stanza.splitlines():
                    if line.startswith("#") or not line.strip():
                        continue
                    if line[0].isspace() and last:
                        fields[last] += " " + line.strip()  # continuation line
                    elif ":" in line:
                        key, value = line.split(":", 1)
                        last = key.strip().lower()
                        fields[last] = value.strip()
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    found.append((uri, fields.get("suites", "").split()))
    return found


def mirror_lines(recipe: Recipe, apt_dir: Path = Path("/etc/apt")) -> list[str]:
    """The ``deb`` lines mmdebstrap gets: the host's mirrors when asked, else the recipe's."""
    debian, security = recipe.mirror.debian, recipe.mirror.security
    if recipe.mirror.from_host:
        host_debian = host_security = None
        for uri, suites in _host_sources(apt_dir):
            # Only Debian archives: a third-party repo on the host has no business in the guest.
            if any(s.endswith("-security") or s.endswith("/updates") for s in suites):
                host_security = host_security or uri
            elif "debian" in uri:
                host_debian = host_debian or uri
        debian = host_debian or debian
        security = host_security or security
    comps = " ".join(recipe.mirror.components)
    lines = [f"deb {debian} {recipe.suite} {comps}"]
    if recipe.mirror.updates:
        lines.append(f"deb {debian} {recipe.suite}-updates {comps}")
    if recipe.mirror.security_updates:
        lines.append(f"deb {security} {recipe.suite}-security {comps}")
    return lines


# --------------------------------------------------------------------------- disk layout

SECTOR = 512
MIB_SECTORS = 1024 * 1024 // SECTOR
GPT_BACKUP_SECTORS = 33  # the backup header and its 128 entries, at the disk's end
# Partition type GUIDs: GRUB's BIOS boot partition, the EFI system partition,
# Linux filesystem data.
TYPE_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
TYPE_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
TYPE_LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


@dataclass(frozen=True)
class Partition:
    name: str
    start: int  # first sector
    sectors: int
    type: str  # GPT partition type GUID

    @property
    def number(self) -> int:
        return {"bios": 1, "esp": 2, "root": 3}[self.name]


def disk_layout(disk_mib: int, esp_mib: int) -> tuple[Partition, Partition, Partition]:
    """The GPT of a disk-booted image, as RHEL for Edge and bootc-image-builder
    lay theirs out (docs/facts.md): a 1 MiB BIOS boot partition (GRUB's core
    image, for SeaBIOS), an EFI system partition (for OVMF), and the root
    filesystem in the rest; every partition MiB-aligned."""
    total = disk_mib * MIB_SECTORS
    bios = Partition("bios", MIB_SECTORS, MIB_SECTORS, TYPE_BIOS_BOOT)
    esp = Partition("esp", bios.start + bios.sectors, esp_mib * MIB_SECTORS, TYPE_ESP)
    start = esp.start + esp.sectors
    end = (total - GPT_BACKUP_SECTORS) // MIB_SECTORS * MIB_SECTORS
    return bios, esp, Partition("root", start, end - start, TYPE_LINUX)


def sfdisk_script(layout: Sequence[Partition]) -> str:
    """``sfdisk``'s input for ``layout`` on an empty disk."""
    lines = ["label: gpt"]
    lines += [f"start={p.start}, size={p.sectors}, type={p.type}, name={p.name}" for p in layout]
    return "\n".join(lines) + "\n"


def grub_install_once(esp: Partition) -> str:
    """The init of the one-shot boot that installs GRUB: for BIOS into the
    BIOS boot partition and the MBR, for UEFI as the removable-media loader
    (\\EFI\\BOOT\\BOOTX64.EFI: no NVRAM entry needed), then grub.cfg; prints
    :data:`GRUB_DONE` on success and powers off either way."""
    return f"""#!/bin/sh
# Run once, as init, by the image build (dcnlab/image/builder.py); removes itself.
trap 'echo DCNLAB-GRUB-FAILED; sync; echo o > /proc/sysrq-trigger' EXIT
set -eu
# The initramfs moves its /proc, /sys and /dev onto the root it hands over.
mountpoint -q /proc || mount -t proc proc /proc
mountpoint -q /sys || mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
mount -o remount,rw /
mount /dev/vda{esp.number} /boot/efi
grub-install --target=i386-pc /dev/vda
grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram
update-grub
umount /boot/efi
rm -f "$0"
sync
trap - EXIT
echo {GRUB_DONE}
echo o > /proc/sysrq-trigger
"""


# --------------------------------------------------------------------------- build steps


def _customize_script(recipe: Recipe, staged: Mapping[str, Path]) -> str:
    """The shell run by mmdebstrap's customize hook, with the rootfs as $1."""
    q = shlex.quote
    out = ["#!/bin/sh", "# generated by dcnlab/image/builder.py from " + str(recipe.path), "set -eu", 'root="$1"']
    for f in recipe.files:
        out.append(f'install -D -o root -g root -m {f.mode:04o} {q(str(staged[f.path]))} "$root"{q(f.path)}')
    # systemctl in a chroot edits [Install] symlinks without a running systemd.
    if recipe.enable:
        out.append(f'chroot "$root" systemctl enable {" ".join(map(q, recipe.enable))}')
    if recipe.disable:
        out.append(f'chroot "$root" systemctl disable {" ".join(map(q, recipe.disable))}')
    if recipe.mask:
        out.append(f'chroot "$root" systemctl mask {" ".join(map(q, recipe.mask))}')
    if recipe.remove:
        # --force-depends: the point is an image that lacks them although
        # installed packages depend on them (Debian's pacemaker needs resource-agents).
        out.append(f'chroot "$root" dpkg --purge --force-depends {" ".join(map(q, recipe.remove))}')
    for command in recipe.run:
        # A private mount namespace: the rootfs bound onto itself so that "/" is
        # a mount point in the chroot (podman's layer unpacking remounts it),
        # and every mount made here vanishes with the command, even if killed.
        out.append(
            "unshare --mount --propagation private sh -c "
            + q('mount --rbind "$1" "$1" && exec chroot "$1" "$2"')
            + f' sh "$root" {q(command)}'
        )
    if recipe.fstab:
        out.append(f'printf "%s\\n" {" ".join(map(q, recipe.fstab))} > "$root/etc/fstab"')
    # mmdebstrap copies the build host's hostname and resolv.conf into the rootfs.
    out.append(f'printf "%s\\n" {q(recipe.hostname)} > "$root/etc/hostname"')
    out.append("printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' > \"$root/etc/hosts\"")
    out.append(': > "$root/etc/resolv.conf"')
    if recipe.lock_root_password:
        out.append('chroot "$root" passwd --lock root')
    if recipe.login_user is not None:
        # Password '*': none, and not "locked" to sshd (which refuses even a key to a '!' account
        # without PAM). Its key is the build's (login_ed25519 beside the disk); sudo needs no password.
        user = q(recipe.login_user)
        out.append(f'chroot "$root" useradd --create-home --shell /bin/bash --user-group {user}')
        out.append(f"chroot \"$root\" usermod -p '*' {user}")
        out.append(f'chroot "$root" install -d -o {user} -g {user} -m 0700 /home/{user}/.ssh')
        out.append(f'install -m 0600 {q(str(staged[LOGIN_KEY]))} "$root"/home/{user}/.ssh/authorized_keys')
        out.append(f'chroot "$root" chown {user}:{user} /home/{user}/.ssh/authorized_keys')
        sudoers = f"{recipe.login_user} ALL=(ALL) NOPASSWD: ALL"
        out.append(f'printf "%s\\n" {q(sudoers)} > "$root/etc/sudoers.d/dcnlab-login"')
        out.append('chmod 0440 "$root/etc/sudoers.d/dcnlab-login"')
    if recipe.remove_ssh_host_keys:
        # Every VM from this base would otherwise share one host identity.
        out.append('rm -f "$root"/etc/ssh/ssh_host_*')
    if recipe.empty_machine_id:
        # Empty (not absent) so systemd makes a fresh id per boot and no VMs share one.
        out.append(': > "$root/etc/machine-id"')
        out.append('rm -f "$root/var/lib/dbus/machine-id"')
    if recipe.clean_apt_lists:
        out.append('rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin')
    return "\n".join(out) + "\n"


def _mmdebstrap_argv(recipe: Recipe, rootfs: Path, hook: Path, mirrors: Sequence[str]) -> list[str]:
    argv = [
        "mmdebstrap",
        # As root this still unshares the mount namespace: the chroot's /proc,
        # /sys and /dev mounts vanish with the process even if it is killed.
        "--mode=unshare",
        f"--variant={recipe.variant}",
        "--format=directory",
        "--verbose",
        f"--include={','.join(recipe.packages)}",
    ]
    if recipe.install_recommends:
        argv.append('--aptopt=APT::Install-Recommends "true"')
    argv += [f"--dpkgopt=path-exclude={p}" for p in recipe.path_exclude]
    argv += [f"--dpkgopt=path-include={p}" for p in recipe.path_include]
    argv.append(f'--customize-hook=sh {shlex.quote(str(hook))} "$1"')
    return [*argv, recipe.suite, str(rootfs), *mirrors]


# mmdebstrap "I:" lines that start a phase, and what the user is told.
_PHASES = (
    ("running apt-get update", "updating package lists"),
    ("downloading packages", "downloading packages"),
    ("extracting archives", "unpacking essential packages"),
    ("installing essential packages", "installing essential packages"),
    ("installing remaining packages", "installing packages"),
    ("running --customize-hook", "customizing"),
    ("cleaning package lists", "cleaning up"),
)


def _phase_of(line: str) -> str | None:
    if not line.startswith("I: "):
        return None
    text = line[3:].lower()
    for needle, phase in _PHASES:
        if text.startswith(needle):
            return phase
    return None


def _tail(path: Path, count: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-count:]) if lines else "(empty log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End mmdebstrap and everything it started (its own process group)."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 30.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_mmdebstrap(argv: list[str], log: Path, report: Callable[[str], None], timeout: float) -> None:
    """Run mmdebstrap to a log file, reporting each phase and at least every PROGRESS_EVERY s."""
    start = time.monotonic()
    deadline = start + timeout
    phase = "starting mmdebstrap"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("wb") as out, log.open("rb") as reader:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        # Own session: a timeout or Ctrl-C stops apt and dpkg too, not just mmdebstrap.
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
        try:
            report(phase)
            last_report = time.monotonic()
            pending = b""
            while True:
                try:
                    code: int | None = proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    code = None
                pending += reader.read()
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    new = _phase_of(raw.decode(errors="replace"))
                    if new is not None and new != phase:
                        phase = new
                        report(phase)
                        last_report = time.monotonic()
                if code is not None:
                    break
                now = time.monotonic()
                if now >= deadline:
                    raise ImageError(
                        f"mmdebstrap did not finish within {timeout / 60:.0f} min (last phase: {phase}); "
                        f"last log lines:\n{_tail(log)}"
                    )
                if now - last_report >= PROGRESS_EVERY:
                    report(phase)
                    last_report = now
        finally:
            _stop(proc)
    if code != 0:
        raise ImageError(f"mmdebstrap failed with exit code {code} during '{phase}'; last log lines:\n{_tail(log)}")


def _mounts_below(path: Path) -> list[str]:
    """Mount points at or under ``path`` (deepest first), from /proc/self/mountinfo."""
    prefix = str(path.resolve())
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            parts = line.split()
            if len(parts) > 4:
                # mountinfo escapes spaces and the like as octal
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    return sorted(found, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """rmtree that refuses to descend into mounts (a leftover /dev bind would be wiped)."""
    if not path.exists():
        return
    for point in _mounts_below(path):
        with contextlib.suppress(CommandError):
            run_local(["umount", "--lazy", point], timeout=60)
    left = _mounts_below(path)
    if left:
        raise ImageError(f"cannot remove {path}: still mounted at {', '.join(left)}; unmount them and retry")
    shutil.rmtree(path)


def _dpkg_versions(rootfs: Path) -> dict[str, str]:
    """name -> version of every installed package, from the rootfs's dpkg status."""
    versions: dict[str, str] = {}
    text = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            versions[fields["Package"]] = fields.get("Version", "?")
    return versions


def _pick_boot_file(rootfs: Path, prefix: str) -> Path:
    candidates = sorted((rootfs / "boot").glob(f"{prefix}-*"))
    if not candidates:
        raise ImageError(f"no /boot/{prefix}-* in the built rootfs; does the recipe include a linux-image package?")
    if len(candidates) > 1:
        raise ImageError(
            f"several kernels in the built rootfs ({', '.join(c.name for c in candidates)}); "
            "the recipe must install exactly one"
        )
    return candidates[0]


def _check_rootfs(recipe: Recipe, rootfs: Path) -> None:
    """Fail the build when the customize step did not do what the recipe says."""
    problems = []
    if recipe.empty_machine_id:
        mid = rootfs / "etc/machine-id"
        if not mid.is_file() or mid.stat().st_size != 0:
            problems.append("/etc/machine-id is not an empty file")
        if (rootfs / "var/lib/dbus/machine-id").exists():
            problems.append("/var/lib/dbus/machine-id exists")
    if recipe.remove_ssh_host_keys and list((rootfs / "etc/ssh").glob("ssh_host_*")):
        problems.append("ssh host keys are left in /etc/ssh")
    for f in recipe.files:
        if not (rootfs / f.path.lstrip("/")).is_file():
            problems.append(f"{f.path} was not installed")
    if recipe.exclude or recipe.remove:
        installed = set(_dpkg_versions(rootfs))
        pulled = sorted(set(recipe.exclude) & installed)
        if pulled:
            problems.append(
                f"{', '.join(pulled)} excluded by the recipe but installed anyway (another package depends on it; "
                "use packages.remove to force it out)"
            )
        left = sorted(set(recipe.remove) & installed)
        if left:
            problems.append(f"{', '.join(left)} still installed although packages.remove names it")
    if problems:
        raise ImageError(f"the built rootfs is wrong: {'; '.join(problems)}")


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _fsync_tree(path: Path) -> None:
    # A crash after the rename must not leave a complete-looking but truncated image.
    for entry in path.iterdir():
        fd = os.open(entry, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _preflight(root: Path) -> None:
    if os.geteuid() != 0:
        raise ImageError("building an image needs root (mmdebstrap and mkfs.ext4 -d keep file ownership); run as root")
    missing = [tool for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img") if shutil.which(tool) is None]
    if missing:
        raise ImageError(
            f"missing {', '.join(missing)}; install them with `apt-get install mmdebstrap e2fsprogs qemu-utils`"
        )
    free = shutil.disk_usage(root).free
    if free < MIN_FREE_BYTES:
        raise ImageError(
            f"only {free / 1024**3:.1f} GiB free under {root}; an image build needs "
            f"{MIN_FREE_BYTES / 1024**3:.0f} GiB: free space or set DCNLAB_CACHE elsewhere"
        )


def _build_into(
    recipe: Recipe, digest: str, work: Path, report: Callable[[str], None], deadline: float
) -> dict[str, Any]:
    """Build the image files into ``work``; returns the manifest (not yet written)."""
    start = time.monotonic()
    staging = work / "guest-files"
    staging.mkdir()
    staged: dict[str, Path] = {}
    for i, f in enumerate(recipe.files):
        staged[f.path] = staging / f"{i:02d}-{Path(f.path).name}"
        staged[f.path].write_bytes(f.content)
    if recipe.login_user is not None:
        generate_key(work / LOGIN_KEY, f"dcnlab-{recipe.name}-{recipe.login_user}")
        staged[LOGIN_KEY] = work / f"{LOGIN_KEY}.pub"
    hook = work / "customize.sh"
    hook.write_text(_customize_script(recipe, staged))
    rootfs = work / "rootfs"
    mirrors = mirror_lines(recipe)
    argv = _mmdebstrap_argv(recipe, rootfs, hook, mirrors)
    _run_mmdebstrap(argv, work / "build.log", report, max(60.0, deadline - time.monotonic()))
    if _mounts_below(rootfs):
        raise ImageError(f"mounts left under {rootfs} after mmdebstrap; refusing to copy /proc or /dev into the image")
    _check_rootfs(recipe, rootfs)

    report("copying kernel and initrd")
    vmlinuz = _pick_boot_file(rootfs, "vmlinuz")
    initrd = _pick_boot_file(rootfs, "initrd.img")
    release = vmlinuz.name.removeprefix("vmlinuz-")
    shutil.copyfile(vmlinuz, work / "vmlinuz")
    shutil.copyfile(initrd, work / "initrd.img")
    # Debian makes initrds 0600; libvirt's QEMU may not run as root elsewhere.
    for name in ("vmlinuz", "initrd.img"):
        os.chmod(work / name, 0o644)
    versions = _dpkg_versions(rootfs)
    rootfs_bytes = _tree_bytes(rootfs)

    raw = work / "disk.raw"
    if recipe.boot == "disk":
        _make_bootable_disk(recipe, rootfs, raw, work, report, deadline)
    else:
        report("making the ext4 filesystem")
        # Initialise inode tables and journal now, or every VM's first boot writes
        # them into its overlay in the background, slowly under emulation.
        run_local(
            [
                "mkfs.ext4",
                "-q",
                "-L",
                "dcnroot",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                "-d",
                rootfs,
                raw,
                f"{recipe.disk_size_mib}M",
            ],
            timeout=max(60.0, min(1200.0, deadline - time.monotonic())),
        )
    _remove_tree(rootfs)

    report("converting to qcow2")
    disk = work / "disk.qcow2"
    run_local(
        ["qemu-img", "convert", "-O", "qcow2", raw, disk],
        timeout=max(60.0, min(1200.0, deadline - time.monotonic())),
    )
    raw.unlink()
    _remove_tree(staging)
    hook.unlink()
    os.chmod(disk, 0o644)

    files = {"disk": "disk.qcow2", "kernel": "vmlinuz", "initrd": "initrd.img", "log": "build.log"}
    if recipe.login_user is not None:
        files["login_key"] = LOGIN_KEY
    boot_bytes = {name: (work / files[name]).stat().st_size for name in ("kernel", "initrd")}
    if recipe.boot == "disk":
        # The disk boots its own GRUB: nothing beside it says how else to boot.
        for name in ("kernel", "initrd"):
            (work / files.pop(name)).unlink()
    key = {
        "pacemaker": versions.get("pacemaker"),
        "corosync": versions.get("corosync"),
        "pcs": versions.get("pcs"),
        "kernel": versions.get(f"linux-image-{release}"),
    }
    return {
        "format": MANIFEST_FORMAT,
        "recipe": recipe.name,
        "description": recipe.description,
        "digest": digest,
        "builder_version": BUILDER_VERSION,
        "suite": recipe.suite,
        "mirrors": mirrors,
        "cmdline": recipe.cmdline,
        "kernel_release": release,
        "packages": key,
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "built_seconds": round(time.monotonic() - start, 1),
        "sizes": {
            "rootfs_bytes": rootfs_bytes,
            "disk_virtual_bytes": recipe.disk_size_mib * 1024 * 1024,
            "disk_bytes": disk.stat().st_size,
            "kernel_bytes": boot_bytes["kernel"],
            "initrd_bytes": boot_bytes["initrd"],
        },
        "boot": recipe.boot,
        "identity": list(recipe.identity),
        "login": {"user": recipe.login_user} if recipe.login_user else None,
        "files": files,
        "installed_packages": dict(sorted(versions.items())),
        "removed_packages": list(recipe.remove),
    }


def _make_bootable_disk(
    recipe: Recipe, rootfs: Path, raw: Path, work: Path, report: Callable[[str], None], deadline: float
) -> None:
    """``raw``: a GPT disk (:func:`disk_layout`) with the root filesystem made
    from ``rootfs``, an empty FAT32 ESP, and GRUB installed for BIOS and UEFI
    by a one-shot boot of the image's own kernel (``work/vmlinuz``)."""
    bios, esp, root = disk_layout(recipe.disk_size_mib, recipe.esp_size_mib)
    (rootfs / "boot" / "efi").mkdir(parents=True, exist_ok=True)
    once = rootfs / GRUB_ONCE.lstrip("/")
    once.parent.mkdir(parents=True, exist_ok=True)
    once.write_text(grub_install_once(esp))
    once.chmod(0o755)

    def left() -> float:
        return max(60.0, min(1200.0, deadline - time.monotonic()))

    report("partitioning the disk (GPT: BIOS boot, EFI system, root)")
    with raw.open("wb") as f:
        f.truncate(recipe.disk_size_mib * 1024 * 1024)
    run_local(["sfdisk", "-q", raw], input=sfdisk_script((bios, esp, root)), timeout=60)
    # -s 1: one sector per cluster. mkfs.fat's own choice for a 64 MiB FAT32
    # (4 KiB clusters) gives 16,344 clusters, under FAT32's least of 65,525:
    # Linux mounts that, OVMF's FAT driver does not (docs/facts.md).
    run_local(
        [
            *("mkfs.vfat", "-F", "32", "-s", "1", "-n", "DCNESP", f"--offset={esp.start}"),
            *(raw, str(esp.sectors * SECTOR // 1024)),
        ],
        timeout=60,
    )
    report("making the ext4 filesystem")
    options = f"offset={root.start * SECTOR},lazy_itable_init=0,lazy_journal_init=0"
    size = f"{root.sectors * SECTOR // 1024}k"
    run_local(["mkfs.ext4", "-q", "-L", "dcnroot", "-E", options, "-d", rootfs, raw, size], timeout=left())

    report("installing GRUB for BIOS and UEFI (a one-shot boot of the image, no network)")
    console = work / "grub-install.console.log"
    # TCG whatever the host offers: this boot must work where KVM cannot
    # boot guests; nothing but the disk and a serial console is attached.
    argv: list[str | Path] = [
        "qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", "1024", "-smp", "1",
        "-display", "none", "-no-reboot", "-nic", "none", "-serial", f"file:{console}",
        "-drive", f"file={raw},format=raw,if=virtio,cache=unsafe",
        "-kernel", work / "vmlinuz", "-initrd", work / "initrd.img",
        "-append", f"root=/dev/vda{root.number} rw console=ttyS0 panic=1 init={GRUB_ONCE}",
    ]  # fmt: skip
    try:
        run_local(argv, timeout=min(GRUB_TIMEOUT, left() * 2))
    except CommandError as err:
        raise ImageError(f"the GRUB install boot failed ({_last_line(err)}); console: {_tail(console)}") from err
    finally:
        # The whole console goes to the build's log, kept on failure: the
        # error shows only its tail, which after a panic is the stack trace.
        text = console.read_text(errors="replace") if console.exists() else ""
        with open(work / "build.log", "a") as log:
            log.write("\n--- the GRUB install boot's console ---\n" + text)
    if GRUB_DONE not in text:
        tail = _tail(console)
        raise ImageError(f"GRUB was not installed on {recipe.name}'s disk; the install boot's console:\n{tail}")
    console.unlink()


@contextlib.contextmanager
def _exclusive(lock_path: Path, deadline: float, waiting: Callable[[float], None]) -> Iterator[None]:
    """Hold an flock on ``lock_path``; another process building the same image makes us wait."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        start = time.monotonic()
        last = start
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise ImageError(
                        f"waited {now - start:.0f}s for another process building this image (lock {lock_path}); "
                        "if no build is running, check for a hung mmdebstrap"
                    ) from None
                if now - last >= PROGRESS_EVERY:
                    waiting(now - start)
                    last = now
                time.sleep(min(1.0, max(0.05, deadline - now)))
        yield
    finally:
        os.close(fd)  # releases the lock


def build_image(
    recipe: str | Path = DEFAULT_RECIPE,
    *,
    cache: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> BuiltImage:
    """Return the cached image for ``recipe``, building it first if needed.

    Safe to call from several processes at once: one builds, the others wait
    for it and then take the cache hit.
    """
    spec = load_recipe(recipe)
    digest = recipe_digest(spec)
    root = _images_root(cache)
    final = root / f"{spec.name}-{digest}"
    if not force:
        # Lock-free fast path: the directory only ever appears by an atomic rename.
        hit = _from_manifest(final, digest)
        if hit is not None:
            return hit

    start = time.monotonic()

    def report(phase: str) -> None:
        if progress is not None:
            progress(f"image {spec.name}: {phase} ({time.monotonic() - start:.0f} s)")

    root.mkdir(parents=True, exist_ok=True)
    deadline = start + BUILD_TIMEOUT
    lock = root / f".lock-{spec.name}-{digest}"
    with _exclusive(lock, deadline + 300, lambda waited: report("waiting for another process building it")):
        if not force:
            hit = _from_manifest(final, digest)
            if hit is not None:
                return hit  # built by whoever held the lock
        # Under the lock, any temp dir for this digest belongs to a dead build.
        for stale in root.glob(f".tmp-{spec.name}-{digest}-*"):
            _remove_tree(stale)
        _preflight(root)
        work = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.name}-{digest}-", dir=root))
        # mkdtemp makes it 0700: apt's _apt sandbox user could not reach the
        # rootfs, nor could QEMU running as an unprivileged user reach the disk.
        os.chmod(work, 0o755)
        try:
            manifest = _build_into(spec, digest, work, report, deadline)
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            _fsync_tree(work)
            if final.exists():
                # force, or a half-deleted cache entry: swap it out, then drop it.
                old = Path(tempfile.mkdtemp(prefix=f".tmp-{spec.name}-{digest}-old-", dir=root))
                os.rename(final, old / "image")
                os.rename(work, final)
                _remove_tree(old)
            else:
                os.rename(work, final)
        except (ImageError, CommandError, OSError) as err:
            # The temp dir goes, so keep its log where the message can point.
            note = ""
            log = work / "build.log"
            if log.exists():
                keep = root / "logs" / f"{spec.name}-{digest}.log"
                keep.parent.mkdir(exist_ok=True)
                shutil.copyfile(log, keep)
                note = f"\nfull log: {keep}"
            raise ImageError(f"image {spec.name}: build failed: {err}{note}") from err
        finally:
            _remove_tree(work)
    report(f"ready in {final}")
    image = _from_manifest(final, digest)
    if image is None:
        raise ImageError(f"image {spec.name}: {final} is incomplete right after the build; delete it and retry")
    return image
