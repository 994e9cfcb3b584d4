"""``rlmbox image build`` and ``image show``: the docker backend's sandbox image."""

from __future__ import annotations

import argparse
from typing import Any

from rlmbox.sandboxes.docker.engine import connect
from rlmbox.sandboxes.images.build import ensure_image, find_image, image_tag


def register(subparsers: Any) -> None:
    image = subparsers.add_parser("image", help="the sandbox image for the docker backend")
    actions = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build", help="build the image for this recipe (cached by its content hash)")
    kind = build.add_mutually_exclusive_group()
    kind.add_argument("--offline", dest="kind", action="store_const", const="offline",
                      help="debootstrap + docker import (root; no registry needed)")
    kind.add_argument("--online", dest="kind", action="store_const", const="online",
                      help="docker build from the Dockerfile (needs a registry)")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    build.set_defaults(handler=run_build, kind=None)
    show = actions.add_parser("show", help="print the expected tags and which one is built")
    show.set_defaults(handler=run_show)


def run_build(args: argparse.Namespace) -> int:
    print(ensure_image(connect(), args.kind or "auto", force=args.force))
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(f"offline: {image_tag('offline')}")
    print(f"online:  {image_tag('online')}")
    print(f"built:   {find_image(connect()) or '(none: run rlmbox image build)'}")
    return 0
