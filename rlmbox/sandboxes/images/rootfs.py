"""The offline sandbox root filesystem: debootstrap, then prune to an allowlist.

No container registry is reachable on some machines, so the image starts from a Debian
``minbase`` tree fetched from the Debian mirror apt already uses. Everything that is not in
the dependency closure of the recipe's ``keep`` list is deleted (the package manager, shells
other than dash, perl, login tools), setuid bits are cleared, and the only users are root,
nobody and the sandbox user. This file is part of the recipe: editing it changes the tag.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from rlmbox.errors import ImageBuildFailed

Log = Callable[[str], None]

_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


@dataclass(frozen=True)
class Recipe:
    """The offline image recipe, loaded from ``recipe.json``."""

    suite: str
    variant: str
    include: tuple[str, ...]
    keep: tuple[str, ...]
    cut: tuple[str, ...]
    user_name: str
    uid: int
    workdir: str
    mountpoints: tuple[str, ...]
    drop_paths: tuple[str, ...]


def debian_mirror(suite: str, sources: Iterable[Path] = _SOURCES) -> str:
    """The mirror URI apt uses for ``suite`` itself (not -updates, not -security)."""
    for path in sources:
        files = sorted(path.glob("*")) if path.is_dir() else [path]
        for file in files:
            if not file.is_file():
                continue
            text = file.read_text(encoding="utf-8", errors="replace")
            uri = (_deb822_uri(text, suite) if file.suffix == ".sources"
                   else _one_line_uri(text, suite))
            if uri:
                return uri
    raise ImageBuildFailed(
        f"no Debian mirror for suite {suite!r} in /etc/apt/sources.list*; "
        "add one or build the image online with 'rlmbox image build --online'")


def _one_line_uri(text: str, suite: str) -> str | None:
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            return words[1]
    return None


def _deb822_uri(text: str, suite: str) -> str | None:
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            uris = fields.get("uris", "").split()
            if uris:
                return uris[0]
    return None


def debootstrap(recipe: Recipe, target: Path, mirror: str, log: Log) -> None:
    """Fetches a minimal Debian tree into ``target`` (needs root and the debootstrap tool)."""
    if shutil.which("debootstrap") is None:
        raise ImageBuildFailed(
            "debootstrap is not installed (apt-get install debootstrap, or build online)")
    if os.geteuid() != 0:
        raise ImageBuildFailed("the offline image build needs root (debootstrap)")
    argv = ["debootstrap", f"--variant={recipe.variant}",
            f"--include={','.join(recipe.include)}", recipe.suite, str(target), mirror]
    log(f"debootstrap {recipe.suite} from {mirror}")
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise ImageBuildFailed(f"debootstrap failed ({done.returncode}): " + " | ".join(tail))


def prune(root: Path, recipe: Recipe, log: Log) -> None:
    """Deletes every packaged file outside the closure of ``recipe.keep``, then strips."""
    packages, provides = _read_status(root / "var/lib/dpkg/status")
    kept = _closure(packages, provides, recipe.keep, frozenset(recipe.cut))
    owned: dict[str, set[str]] = {}
    for name in packages:
        for file in _package_files(root, name):
            owned.setdefault(_canonical(root, file), set()).add(name)
    doomed = [path for path, owners in owned.items() if not owners & kept]
    log(f"keeping {len(kept)} of {len(packages)} packages; deleting {len(doomed)} paths")
    for path in sorted(doomed, key=len, reverse=True):  # children before their directories
        _remove(Path(path))
    for rel in recipe.drop_paths:
        _remove_tree(root / rel.lstrip("/"))
    _clear_setid_bits(root)
    _write_users(root, recipe)
    for rel in recipe.mountpoints:
        (root / rel.lstrip("/")).mkdir(parents=True, exist_ok=True)
    work = root / recipe.workdir.lstrip("/")
    os.chown(work, recipe.uid, recipe.uid)
    os.chmod(work, 0o700)


def _read_status(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Installed package -> its dependency text; virtual package -> a provider."""
    packages: dict[str, str] = {}
    provides: dict[str, str] = {}
    for stanza in path.read_text(encoding="utf-8").split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, flags=re.MULTILINE))
        if "Package" in fields and "install ok installed" in fields.get("Status", ""):
            deps = ", ".join(x for x in (fields.get("Pre-Depends"), fields.get("Depends")) if x)
            packages[fields["Package"]] = deps
            for virtual in fields.get("Provides", "").split(","):
                name = virtual.strip().split(" ")[0]
                if name:
                    provides.setdefault(name, fields["Package"])
    return packages, provides


def _closure(packages: dict[str, str], provides: dict[str, str],
             roots: Iterable[str], cut: frozenset[str]) -> set[str]:
    kept: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in kept or name in cut:
            continue
        if name not in packages:
            raise ImageBuildFailed(f"recipe keeps {name!r}, which debootstrap did not install")
        kept.add(name)
        for clause in filter(None, (c.strip() for c in packages[name].split(","))):
            for alternative in clause.split("|"):
                dep = alternative.strip().split(" ")[0].split(":")[0]
                real = dep if dep in packages else provides.get(dep)
                if real is not None:
                    todo.append(real)
                    break
    return kept


def _package_files(root: Path, name: str) -> list[str]:
    info = root / "var/lib/dpkg/info"
    for candidate in (info / f"{name}.list", info / f"{name}:amd64.list"):
        if candidate.exists():
            return [line for line in candidate.read_text().splitlines() if line not in ("", "/.")]
    return []


def _canonical(root: Path, file: str) -> str:
    """Resolves merged-/usr directory links so /bin/x and /usr/bin/x are one path."""
    parent = os.path.realpath(root / os.path.dirname(file).lstrip("/"))
    return os.path.join(parent, os.path.basename(file))


def _remove(path: Path) -> None:
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            path.rmdir()  # only when empty; kept packages may still own files inside
    except (FileNotFoundError, OSError):
        pass


def _remove_tree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _clear_setid_bits(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))


def _write_users(root: Path, recipe: Recipe) -> None:
    uid, name = recipe.uid, recipe.user_name
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        f"{name}:x:{uid}:{uid}:rlmbox sandbox:{recipe.workdir}:/usr/sbin/nologin\n")
    (root / "etc/group").write_text(f"root:x:0:\nnogroup:x:65534:\n{name}:x:{uid}:\n")
    for secret in ("etc/shadow", "etc/gshadow", "etc/passwd-", "etc/group-", "etc/shadow-"):
        (root / secret).unlink(missing_ok=True)
