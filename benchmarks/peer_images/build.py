"""Builds the peers' image offline, cached by the content hash of everything that goes in.

rlms' DockerREPL and llm-sandbox expect a ``python:3.11-slim``-like image (root, ``python``,
``dill`` and ``requests``, coreutils). No registry is reachable here, so the image is made
``FROM`` rlmbox's offline sandbox image with the Dockerfile beside this file, and a build
context staged from the host: the installed files of the pure-Python packages (read from
this interpreter's site-packages through their RECORD, so no network is needed), a few
coreutils binaries and the shared libraries they link beyond libc. The tag carries a hash of
the Dockerfile, the base image id and every staged file, so a rebuild happens only when one
of them changes.

    python benchmarks/peer_images/build.py      # prints the tag, building when missing
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPOSITORY = "rlmbox-peer"
# requests' own dependencies are listed: the image has no pip to resolve them.
PACKAGES = ("dill", "requests", "urllib3", "idna", "certifi", "charset-normalizer")
TOOLS = ("tail", "rm", "mkdir", "chown", "cat")
# Present in the base image (the dependency closure of python3).
BASE_LIBS = ("linux-vdso", "libc.so", "ld-linux", "libm.so")


class PeerImageError(RuntimeError):
    """The peer image cannot be staged or built (a benchmark-side error, not rlmbox's)."""


def stage(context: Path) -> None:
    """Fills a build context: Dockerfile, site/, bin/, lib/."""
    shutil.copy2(HERE / "Dockerfile", context / "Dockerfile")
    site, bin_dir, lib = context / "site", context / "bin", context / "lib"
    for directory in (site, bin_dir, lib):
        directory.mkdir()
    for name in PACKAGES:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise PeerImageError(f"{name} is not installed in {sys.prefix}; "
                                 f"pip install {name}") from exc
        for file in dist.files or ():
            if "__pycache__" in file.parts or file.parts[0].startswith(".."):
                continue   # bytecode is rebuilt in the image; '..' entries are scripts
            source = Path(str(dist.locate_file(file)))
            if source.is_file():
                target = site / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    libs: dict[str, Path] = {}
    for tool in TOOLS:
        path = shutil.which(tool)
        if path is None:
            raise PeerImageError(f"the host has no {tool!r} to copy into the peer image")
        shutil.copy2(path, bin_dir / tool)
        libs.update(_linked_libraries(Path(path)))
    for soname, library in sorted(libs.items()):
        shutil.copyfile(library, lib / soname)   # the soname the loader asks for


def _linked_libraries(binary: Path) -> dict[str, Path]:
    """Shared libraries ``binary`` needs beyond those the base image has, by soname."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split("=>")
        if len(parts) != 2 or any(base in parts[0] for base in BASE_LIBS):
            continue
        found[parts[0].strip()] = Path(parts[1].split("(")[0].strip()).resolve()
    return found


def content_hash(context: Path, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode())
    for path in sorted(p for p in context.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(context)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_peer_image(client: Any, base: str) -> str:
    """The tag of the peer image over ``base``, built first when missing."""
    import docker.errors  # optional dependency: imported late

    base_id = client.images.get(base).id
    with tempfile.TemporaryDirectory(prefix="rlmbox-peer-") as tmp:
        context = Path(tmp)
        stage(context)
        tag = f"{REPOSITORY}:{content_hash(context, base_id)}"
        try:
            client.images.get(tag)
        except docker.errors.ImageNotFound:
            pass
        else:
            return tag
        try:
            client.images.build(path=str(context), tag=tag, buildargs={"BASE": base},
                                rm=True, forcerm=True, pull=False, network_mode="none",
                                labels={"org.rlmbox.peer-image": "1"})
        except docker.errors.BuildError as exc:
            log = "".join(str(chunk.get("stream", "")) for chunk in exc.build_log)
            raise PeerImageError(f"building {tag} failed: {exc}\n{log}") from exc
    return tag


def main() -> int:
    from rlmbox.sandboxes.docker.engine import connect
    from rlmbox.sandboxes.images.build import ensure_image

    client = connect()
    print(ensure_peer_image(client, ensure_image(client)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
