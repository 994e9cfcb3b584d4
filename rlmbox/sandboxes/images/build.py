"""Builds the sandbox image, online from the Dockerfile or offline from debootstrap.

The tag carries a content hash of the recipe (``rlmbox-sandbox:offline-<hash>`` or
``online-<hash>``), so an image is rebuilt only when its recipe changes and a backend can
find the image matching the code it runs. Used by ``rlmbox image build`` and by
``scripts/provision.sh`` (``python -m rlmbox.sandboxes.images.build``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from rlmbox.errors import ImageBuildFailed, RlmboxError
from rlmbox.sandboxes.docker.engine import connect, translated
from rlmbox.sandboxes.images.rootfs import Log, Recipe, debian_mirror, debootstrap, prune

REPOSITORY = "rlmbox-sandbox"
HERE = Path(__file__).resolve().parent
RECIPE_FILE = HERE / "recipe.json"
LABEL = "org.rlmbox.recipe"
Kind = Literal["offline", "online"]

# The files whose bytes define each kind of image; any edit gives a new tag.
_RECIPE_FILES: dict[Kind, tuple[Path, ...]] = {
    "offline": (RECIPE_FILE, HERE / "rootfs.py"),
    "online": (HERE / "Dockerfile",),
}


def load_recipe(path: Path = RECIPE_FILE) -> Recipe:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Recipe(suite=raw["suite"], variant=raw["variant"], include=tuple(raw["include"]),
                  keep=tuple(raw["keep"]), cut=tuple(raw.get("cut", ())),
                  user_name=raw["user"]["name"], uid=int(raw["user"]["uid"]),
                  workdir=raw["workdir"],
                  mountpoints=tuple(raw["mountpoints"]), drop_paths=tuple(raw["drop_paths"]))


def recipe_hash(kind: Kind) -> str:
    digest = hashlib.sha256()
    for file in _RECIPE_FILES[kind]:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def image_tag(kind: Kind) -> str:
    return f"{REPOSITORY}:{kind}-{recipe_hash(kind)}"


def find_image(client: Any) -> str | None:
    """The tag of an image built from the current recipe, offline or online, if present."""
    import docker.errors  # noqa: PLC0415

    kinds: tuple[Kind, ...] = ("offline", "online")
    for kind in kinds:
        tag = image_tag(kind)
        with translated(f"looking up image {tag}"):
            try:
                client.images.get(tag)
            except docker.errors.ImageNotFound:
                continue
        return tag
    return None


def ensure_image(client: Any, kind: Kind | Literal["auto"] = "auto", force: bool = False,
                 log: Log | None = None) -> str:
    """Returns the image tag for the current recipe, building it first when missing."""
    say = log or _stderr_log
    if kind == "auto":
        existing = find_image(client)
        if existing and not force:
            say(f"image {existing} is up to date")
            return existing
        kind = "offline" if shutil.which("debootstrap") and os.geteuid() == 0 else "online"
    tag = image_tag(kind)
    if not force and find_image(client) == tag:
        say(f"image {tag} is up to date")
        return tag
    started = time.monotonic()
    if kind == "offline":
        _build_offline(client, tag, say)
    else:
        _build_online(client, tag, say)
    say(f"built {tag} in {time.monotonic() - started:.1f} s")
    return tag


def _build_offline(client: Any, tag: str, log: Log) -> None:
    recipe = load_recipe()
    with tempfile.TemporaryDirectory(prefix="rlmbox-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "root"
        debootstrap(recipe, root, debian_mirror(recipe.suite), log)
        prune(root, recipe, log)
        log("importing the root filesystem into the engine")
        changes = [f"USER {recipe.uid}:{recipe.uid}", f"WORKDIR {recipe.workdir}",
                   "ENV LANG=C.UTF-8", "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                   f"LABEL {LABEL}={tag.split(':', 1)[1]}", 'CMD ["python3"]']
        excludes = ["--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*"]
        with subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", *excludes, "-cf", "-",
                               "."], stdout=subprocess.PIPE) as tar:
            if tar.stdout is None:   # Popen with PIPE always has it; checked, not assumed
                raise ImageBuildFailed("tar gave no output pipe")
            repository, _, name = tag.partition(":")
            with translated(f"importing image {tag}"):
                client.api.import_image_from_stream(tar.stdout, repository=repository, tag=name,
                                                    changes=changes)
        if tar.returncode not in (0, None):
            raise ImageBuildFailed(f"tar of the root filesystem failed ({tar.returncode})")


def _build_online(client: Any, tag: str, log: Log) -> None:
    log(f"building {tag} from {HERE / 'Dockerfile'} (needs a reachable registry)")
    with translated(f"building image {tag} from the Dockerfile"):
        client.images.build(path=str(HERE), dockerfile="Dockerfile", tag=tag, rm=True,
                            labels={LABEL: tag.split(":", 1)[1]}, network_mode="default")


def _stderr_log(message: str) -> None:
    print(f"[rlmbox image] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlmbox.sandboxes.images.build",
                                     description="Build the rlmbox sandbox image.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--offline", dest="kind", action="store_const", const="offline")
    group.add_argument("--online", dest="kind", action="store_const", const="online")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    try:
        tag = ensure_image(connect(), args.kind or "auto", force=args.force)
    except RlmboxError as exc:
        print(f"[rlmbox image] error: {exc}", file=sys.stderr)
        return 1
    print(tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
