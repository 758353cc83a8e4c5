"""Build steps shared by the live system (`imager.boot.live`) and the QEMU lab's
guest (tests/lab/build.py): a Debian root made by mmdebstrap, Debian's kernel with
only the modules asked for (and the firmware files they name), the project's
Python dependencies from PyPI wheels for the guest's Python, and the whole root
as one reproducible zstd newc cpio (the kernel unpacks it and runs /init: no
switch_root).

    mmdebstrap(root, suite=..., sources=..., packages=..., hooks=fetch_hook(...))
    kernel = install_kernel(root, staged(root, kernel_package), dest, modules)
    install_firmware(root, [staged dirs], firmware_names(root, kernel))
    install_wheels(root, python, requirements); compile_python(root, python, [dirs])
    clamp_mtimes(root, since=build_start, epoch=...); make_initramfs(root, dest)

Packages that must not be installed in the root (the kernel, the firmware, the
boot loaders) are fetched by `fetch_hook` with the root's own apt and unpacked
under /imager-staging, listed in FETCHED with their version and sha256; the
caller copies what it needs out and removes STAGING before the initramfs.
Every step raises ImagerError naming the step and the fix."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from imager.errors import ImagerError
from imager.host.run import ToolFailed, run
from imager.host.stream import require_tool, run_streaming

STAGING = "imager-staging"            # in the root: the fetched packages, unpacked
FETCHED = "fetched.tsv"               # in STAGING: package, version, arch, .deb sha256
DPKG_EXCLUDES = (
    "/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*",
    "/usr/share/lintian/*", "/usr/share/bug/*",
)
HOST_TOOLS = {"mmdebstrap": "mmdebstrap", "cpio": "cpio", "zstd": "zstd",
              "chroot": "coreutils", "dpkg-deb": "dpkg", "bash": "bash"}
LineFn = Callable[[str], None]


@dataclass(frozen=True)
class GuestPython:
    """The guest's Python: wheels are chosen for it, not for the host's."""

    version: str                       # "3.13"
    glibc_minor: int                   # trixie: glibc 2.41 -> 41

    @property
    def site(self) -> str:
        """Where the wheels go, relative to the root (on Debian's sys.path)."""
        return f"usr/local/lib/python{self.version}/dist-packages"

    @property
    def platforms(self) -> tuple[str, ...]:
        """pip's --platform values: pip does not expand a manylinux tag to the
        older ones the guest accepts, so they are all listed."""
        return (*[f"manylinux_2_{minor}_x86_64" for minor in range(self.glibc_minor, 4, -1)],
                "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")


@dataclass(frozen=True)
class Fetched:
    """A package `fetch_hook` unpacked under STAGING/<name>."""

    name: str
    version: str
    arch: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "arch": self.arch,
                "sha256": self.sha256}


def missing_tools() -> list[str]:
    """Host tools a guest build needs that are not installed (Debian package names)."""
    return sorted({pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None})


def python_requirements(pyproject: Path) -> list[str]:
    """The project's runtime dependencies, as pip requirement strings."""
    with open(pyproject, "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


# Runs on the host in mmdebstrap's customize phase, while the root's apt still has
# its package lists: fetch the packages, resolve the kernel's meta-package to the
# versioned image it depends on, unpack each under STAGING/<name>.
_FETCH = """\
set -eu
root="$1"
stage="$root/{staging}"
mkdir -p "$stage/debs"
kernel=""
if [ -n "{kernel}" ]; then
    kernel=$(chroot "$root" apt-cache depends --important {kernel} \\
             | sed -n 's/^ *Depends: \\(linux-image-[0-9].*\\)$/\\1/p' | head -n1)
    [ -n "$kernel" ] || {{ echo "imager: cannot resolve {kernel} to a kernel" >&2; exit 1; }}
fi
chroot "$root" sh -ec "cd /{staging}/debs && apt-get download -q $kernel {others} 2>&1"
: > "$stage/{fetched}"
for deb in "$stage"/debs/*.deb; do
    name=$(dpkg-deb -f "$deb" Package)
    dpkg-deb -x "$deb" "$stage/$name"
    printf '%s\\t%s\\t%s\\t%s\\n' "$name" "$(dpkg-deb -f "$deb" Version)" \\
        "$(dpkg-deb -f "$deb" Architecture)" "$(sha256sum "$deb" | cut -d' ' -f1)" \\
        >> "$stage/{fetched}"
done
rm -rf "$stage/debs"
"""


def fetch_hook(packages: Sequence[str], *, kernel: str | None = None) -> str:
    """The customize hook (`sh HOOK "$1"`) that fetches `packages` and the kernel
    the meta-package `kernel` (e.g. linux-image-amd64) depends on."""
    return _FETCH.format(staging=STAGING, fetched=FETCHED, kernel=kernel or "",
                         others=" ".join(shlex.quote(p) for p in packages))


def fetched(root: Path) -> tuple[Fetched, ...]:
    """What `fetch_hook` unpacked, in name order."""
    path = root / STAGING / FETCHED
    if not path.is_file():
        raise ImagerError(f"{path} is missing: the build's fetch hook did not run")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line]
    return tuple(sorted((Fetched(*row) for row in rows), key=lambda f: f.name))


def staged(root: Path, name: str) -> Path:
    """Where the fetched package `name` is unpacked."""
    folder = root / STAGING / name
    if not folder.is_dir():
        raise ImagerError(f"the package {name} was not fetched into {folder.parent}: "
                          "add it to the build's fetch hook")
    return folder


def mmdebstrap(root: Path, *, suite: str, sources: Sequence[str], packages: Sequence[str],
               components: Sequence[str] = ("main",), hooks: Sequence[str] = (),
               work: Path, epoch: int, on_line: LineFn | None = None) -> None:
    """A minbase root in the directory `root` (no recommends, no docs or locales);
    `hooks`: shell scripts run as customize hooks with the root as $1."""
    argv = ["mmdebstrap", "--verbose", "--mode=root", "--variant=minbase",
            "--format=directory", '--aptopt=APT::Install-Recommends "false"',
            f"--components={','.join(components)}", f"--include={','.join(packages)}",
            *[f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]]
    for index, text in enumerate(hooks):
        script = work / f"hook-{index}.sh"
        script.write_text(text)
        argv.append(f"--customize-hook=sh {shlex.quote(str(script))} \"$1\"")
    argv += [suite, str(root), *sources]
    log = work / "mmdebstrap.log"
    env = {"SOURCE_DATE_EPOCH": str(epoch), "DEBIAN_FRONTEND": "noninteractive",
           "TMPDIR": "/var/tmp"}
    with open(log, "w", encoding="utf-8") as fh:
        def line(text: str) -> None:
            fh.write(text + "\n")
            if on_line is not None:
                on_line(text)
        try:
            run_streaming(argv, on_line=line, env=env, timeout=3600)
        except ToolFailed as exc:
            tail = "\n".join(exc.result.stdout.splitlines()[-25:])
            raise ImagerError(f"mmdebstrap a échoué / mmdebstrap failed ({suite}, exit "
                              f"{exc.result.returncode}; whole log: {log}): check the "
                              f"network and the package names:\n{tail}") from exc


def simulate(*, suite: str, sources: Sequence[str], packages: Sequence[str],
             components: Sequence[str] = ("main",), work: Path) -> str:
    """apt's plan for a minbase root with `packages` (mmdebstrap --simulate: only the
    indexes are downloaded), as printed: `Inst name (version ...)` lines."""
    argv = ["mmdebstrap", "--verbose", "--mode=root", "--variant=minbase", "--format=null",
            '--aptopt=APT::Install-Recommends "false"', f"--components={','.join(components)}",
            f"--include={','.join(packages)}", "--simulate", suite, "/dev/null", *sources]
    env = {"DEBIAN_FRONTEND": "noninteractive", "TMPDIR": str(work)}
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run_streaming(argv, env=env, timeout=900).stdout
    except ToolFailed as exc:
        tail = "\n".join(exc.result.stdout.splitlines()[-8:])
        raise ImagerError(f"résolution impossible / cannot resolve the packages of {suite} "
                          f"({', '.join(sources)}): check the network and the package "
                          f"names:\n{tail}") from exc


def wheel_versions(python: GuestPython, requirements: Sequence[str], work: Path) -> list[str]:
    """The distributions (name==version, sorted) pip would install for the guest's
    Python today (`pip install --dry-run --report`: nothing installed)."""
    work.mkdir(parents=True, exist_ok=True)
    report = work / "pip-report.json"
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
            "--dry-run", "--ignore-installed", "--report", str(report),
            "--only-binary=:all:", "--implementation=cp", f"--python-version={python.version}",
            *[f"--platform={p}" for p in python.platforms], "--target", str(work / "none"),
            *requirements]
    try:
        run_streaming(argv, timeout=900)
        found = json.loads(report.read_text(encoding="utf-8"))["install"]
    except (ToolFailed, OSError, ValueError, KeyError) as exc:
        raise ImagerError(f"pip cannot resolve the guest's Python dependencies for Python "
                          f"{python.version} (check the network and PyPI): {exc}") from exc
    return sorted(f"{re.sub(r'[-_.]+', '-', item['metadata']['name']).lower()}=="
                  f"{item['metadata']['version']}" for item in found)     # PEP 503 names


def chroot(root: Path, *argv: str, what: str, timeout: float = 900,
           env: dict[str, str] | None = None) -> str:
    """Run `argv` inside the root; ImagerError naming `what` if it fails."""
    prefix = ["env", *[f"{k}={v}" for k, v in (env or {}).items()]] if env else []
    try:
        return run(["chroot", str(root), *prefix, *argv], timeout=timeout).stdout
    except ToolFailed as exc:
        tail = "\n".join((exc.result.stdout + exc.result.stderr).splitlines()[-15:])
        raise ImagerError(f"{what} failed in the guest root {root} (exit "
                          f"{exc.result.returncode}):\n{tail}") from exc


@dataclass(frozen=True)
class Kernel:
    version: str
    modules: tuple[str, ...]           # the .ko files kept, relative to the module dir


def install_kernel(root: Path, package: Path, vmlinuz: Path,
                   modules: Iterable[str]) -> Kernel:
    """Copy the kernel of the unpacked `package` to `vmlinuz` and install in the
    root only `modules` and what they depend on (modprobe --show-depends)."""
    moddir = _module_dir(package)
    versions = sorted(p.name for p in moddir.iterdir())
    if len(versions) != 1:
        raise ImagerError(f"expected one kernel in {moddir}, found {versions}")
    kver = versions[0]
    shutil.copyfile(package / f"boot/vmlinuz-{kver}", vmlinuz)
    check_kernel_config(package / f"boot/config-{kver}")
    inside = "/" + str(package.relative_to(root))
    chroot(root, "depmod", "-b", inside, kver, what="depmod (whole kernel)")
    kept: set[str] = set()
    for name in modules:
        out = chroot(root, "modprobe", "-d", inside, "-S", kver, "--show-depends", name,
                     what=f"modprobe --show-depends {name} (is the module in {kver}?)")
        kept |= {line.split()[1] for line in out.splitlines() if line.startswith("insmod ")}
    dest = _in_root(root, "lib/modules") / kver
    relative = sorted(str(Path(k).relative_to(_inside_moddir(inside, kver, k))) for k in kept)
    for rel in relative:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(moddir / kver / rel, dest / rel)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        shutil.copyfile(moddir / kver / name, dest / name)
    chroot(root, "depmod", kver, what="depmod (kept modules)")
    return Kernel(kver, tuple(relative))


def _in_root(root: Path, relative: str) -> Path:
    """`root`/`relative`, refusing a path whose links lead out of the root (an
    absolute /lib -> /usr/lib link would write into the host's /usr/lib)."""
    path = root / relative
    real, top = os.path.realpath(path), os.path.realpath(root)
    if os.path.commonpath([real, top]) != top:
        raise ImagerError(f"{path} leads out of the guest root (to {real}): the root's "
                          "links must be relative")
    return path


def _module_dir(package: Path) -> Path:
    """The unpacked kernel's modules (usr/lib/modules since trixie, lib/modules
    before); modprobe -d looks under lib/modules: link it when missing."""
    merged, legacy = package / "usr/lib/modules", package / "lib/modules"
    if merged.is_dir() and not legacy.exists():
        (package / "lib").symlink_to("usr/lib")
    found = merged if merged.is_dir() else legacy
    if not found.is_dir():
        raise ImagerError(f"no kernel modules in {package}: is it a linux-image package?")
    return found


def _inside_moddir(inside: str, kver: str, path: str) -> str:
    """The module dir prefix of `path` as modprobe printed it."""
    for base in (f"{inside}/lib/modules/{kver}", f"{inside}/usr/lib/modules/{kver}"):
        if path.startswith(base + "/"):
            return base
    raise ImagerError(f"modprobe named {path}, outside the kernel's module dir {inside}")


def check_kernel_config(config: Path) -> None:
    """The kernel can unpack a zstd initramfs and run it."""
    text = config.read_text()
    for option in ("CONFIG_RD_ZSTD=y", "CONFIG_BLK_DEV_INITRD=y", "CONFIG_DEVTMPFS=y"):
        if option not in text:
            raise ImagerError(f"the guest kernel lacks {option}: it cannot boot the image")


def firmware_names(root: Path, kernel: Kernel) -> list[str]:
    """The firmware files the kept modules may ask for (modinfo -F firmware)."""
    moddir = f"/lib/modules/{kernel.version}"
    names: set[str] = set()
    for start in range(0, len(kernel.modules), 100):
        batch = [f"{moddir}/{m}" for m in kernel.modules[start:start + 100]]
        out = chroot(root, "modinfo", "-k", kernel.version, "-F", "firmware", *batch,
                     what="modinfo -F firmware")
        names |= {line.strip() for line in out.splitlines() if line.strip()}
    return sorted(names)


def install_firmware(root: Path, packages: Sequence[Path], names: Iterable[str]) -> list[str]:
    """Copy the firmware files `names` found in the unpacked `packages` into the
    root's /lib/firmware (as packaged, maybe .zst or .xz; links resolved);
    the names found."""
    copied = []
    for name in names:
        for package in packages:
            found = _firmware_file(package, name)
            if found is not None:
                source, suffix = found
                dest = _in_root(root, "lib/firmware") / (name + suffix)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)
                copied.append(name)
                break
    return copied


def _firmware_file(package: Path, name: str) -> tuple[Path, str] | None:
    """The file (links followed) and the suffix the firmware `name` has in `package`."""
    for base in ("usr/lib/firmware", "lib/firmware"):
        for suffix in ("", ".zst", ".xz"):
            resolved = _resolve_inside(package, package / base / (name + suffix))
            if resolved is not None and resolved.is_file():
                return resolved, suffix
    return None


def _resolve_inside(package: Path, path: Path) -> Path | None:
    """`path` with its symbolic links followed inside `package` (an absolute link
    target is read against the package's root, never the host's)."""
    for _ in range(20):
        if not path.is_symlink():
            return path if path.exists() else None
        target = Path(os.readlink(path))
        path = package / target.relative_to("/") if target.is_absolute() \
            else path.parent / target
    return None


def install_wheels(root: Path, python: GuestPython, requirements: Sequence[str], *,
                   on_line: LineFn | None = None) -> list[str]:
    """The requirements from PyPI wheels for the guest's Python, into its site
    directory; the distributions installed (name-version), sorted."""
    site = root / python.site
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
            "--no-compile", "--only-binary=:all:", "--implementation=cp",
            f"--python-version={python.version}",
            *[f"--platform={p}" for p in python.platforms],
            "--target", str(site), *requirements]
    try:
        run_streaming(argv, on_line=on_line, timeout=1800)
    except ToolFailed as exc:
        tail = "\n".join(exc.result.stdout.splitlines()[-15:])
        raise ImagerError(f"pip could not install the guest's Python dependencies for "
                          f"Python {python.version} (wheels only, manylinux up to glibc "
                          f"2.{python.glibc_minor}): check the network and PyPI:\n{tail}"
                          ) from exc
    # The console scripts go, and their lines in each RECORD with them: pip writes the
    # host interpreter's path into the scripts, so the hashes in RECORD would make
    # the root depend on where the build ran (seen: two venvs, two live.img).
    shutil.rmtree(site / "bin", ignore_errors=True)
    for record in site.glob("*.dist-info/RECORD"):
        lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if not line.startswith("../../bin/")]
        if kept != lines:
            record.write_text("".join(kept), encoding="utf-8")
    return sorted(p.name.removesuffix(".dist-info") for p in site.glob("*.dist-info"))


def compile_python(root: Path, dirs: Sequence[str], *, epoch: int) -> None:
    """Byte-compile `dirs` (absolute in the root) with the guest's own Python:
    TCG makes compiling at import slow. Unchecked hash-based .pyc files: they
    do not depend on the sources' dates, and the live system never edits them."""
    chroot(root, "python3", "-m", "compileall", "-q", "-j0",
           "--invalidation-mode", "unchecked-hash", *dirs,
           what="compileall (the guest's Python code)", env={"SOURCE_DATE_EPOCH": str(epoch)})


def clamp_mtimes(root: Path, *, since: float, epoch: int) -> int:
    """Date every file the build made or changed (modified at or after `since`)
    `epoch`; the files unpacked from .deb files keep their packaged dates (so do
    the .pyc files Debian compiled against them). The number of files dated."""
    changed = 0
    for folder, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = os.path.join(folder, name)
            if os.lstat(path).st_mtime >= since:
                os.utime(path, (epoch, epoch), follow_symlinks=False)
                changed += 1
    if os.lstat(root).st_mtime >= since:
        os.utime(root, (epoch, epoch))
    return changed


def make_initramfs(root: Path, dest: Path, *, level: int = 19) -> None:
    """`root` as a newc cpio in name order (owners kept, inodes renumbered, no
    device numbers), compressed with zstd: the same tree gives the same bytes."""
    script = ("set -euo pipefail; find . -mindepth 1 -print0 | LC_ALL=C sort -z"
              " | cpio --null --create --format=newc --reproducible --quiet"
              f" | zstd -q -T0 -{level} -o {shlex.quote(str(dest))}")
    for tool in ("cpio", "zstd"):
        require_tool(tool)
    try:
        run_streaming(["bash", "-c", script], cwd=root, timeout=3600)
    except ToolFailed as exc:
        raise ImagerError(f"cpio | zstd of {root} into {dest} failed: "
                          f"{exc.result.stdout.strip()[-500:]}") from exc


def extract_initramfs(image: Path, dest: Path) -> None:
    """Unpack a zstd newc cpio (made by `make_initramfs`) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    script = (f"set -euo pipefail; zstd -q -dc {shlex.quote(str(image))}"
              " | cpio -idm --quiet --no-absolute-filenames")
    try:
        run_streaming(["bash", "-c", script], cwd=dest, timeout=1800)
    except ToolFailed as exc:
        raise ImagerError(f"cannot unpack {image} into {dest}: "
                          f"{exc.result.stdout.strip()[-500:]}; remove it and build "
                          "again") from exc
