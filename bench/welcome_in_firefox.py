#!/usr/bin/env python3
"""The welcome page and the browser's policies in the real firefox-esr of the
`bureau-solidaire` image, as a beneficiary's laptop will run them.

    sudo .venv/bin/python bench/welcome_in_firefox.py [--out DIR]

Builds the profile's image (or takes it from the build cache, IMAGER_OS_CACHE or
/var/cache/imager-os), attaches its disk, mounts its root partition read-only
under a copy-on-write layer on tmpfs (the cached image is never changed) and runs
the image's own firefox-esr inside it through chroot, headless: `about:policies`
(the policies of the profile's package, read from /etc/firefox/policies) and the
home page, as 1366×768 PNG screenshots in DIR (default: a temporary folder;
`--out docs` refreshes docs/firefox-*.png: look at them before committing).
A host browser reading a copied policy file would prove nothing: this is the
image's browser, with the image's files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import os_image  # noqa: E402

from imager.host import loopdev  # noqa: E402
from imager.profile.spec import load  # noqa: E402
from imager.profile.welcome.packaging import homepage  # noqa: E402

PROFILE = "bureau-solidaire"
ROOT_PARTITION = 3
SHOTS = {"firefox-politiques.png": "about:policies", "firefox-accueil.png": None}


def _firefox(root: Path, url: str, png: str) -> None:
    """The image's firefox-esr, headless, screenshot of `url` into /tmp/shots/`png`."""
    argv = ["chroot", str(root), "env", "HOME=/tmp/home", "LANG=fr_FR.UTF-8",
            "firefox-esr", "--headless", "--no-remote", "--window-size=1366,768",
            "--screenshot", f"/tmp/shots/{png}", url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not (root / "tmp/shots" / png).is_file():
        raise SystemExit(f"firefox-esr in the image failed on {url} (exit "
                         f"{done.returncode}):\n{done.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="firefox-image-"))
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="welcome-firefox-") as tmp:
        work = Path(tmp)
        built = os_image.profile_image(PROFILE)
        print(f"image: {built.raw} ({'cache' if built.cached else 'built'})")
        lower, layer, merged = work / "lower", work / "layer", work / "root"
        for folder in (lower, layer, merged):
            folder.mkdir()
        with ExitStack() as stack:
            dev = stack.enter_context(loopdev.attached(built.raw, partitions=ROOT_PARTITION))
            stack.enter_context(loopdev.mounted(loopdev.partition(dev, ROOT_PARTITION), lower,
                                                options=("ro", "noload")))
            stack.enter_context(loopdev.mounted("tmpfs", layer, fstype="tmpfs"))
            (layer / "up").mkdir()
            (layer / "work").mkdir()
            stack.enter_context(loopdev.mounted("overlay", merged, fstype="overlay", options=(
                f"lowerdir={lower}", f"upperdir={layer / 'up'}", f"workdir={layer / 'work'}")))
            stack.enter_context(loopdev.chroot_mounts(merged))
            for folder in ("tmp/home", "tmp/shots"):
                (merged / folder).mkdir(parents=True, exist_ok=True)
            slug = load(PROFILE).network.slug
            for png, url in SHOTS.items():
                _firefox(merged, url or homepage(slug), png)
                shutil.copy(merged / "tmp/shots" / png, out / png)
                print(f"{url or homepage(slug)}: {out / png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
