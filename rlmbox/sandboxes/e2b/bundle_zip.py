"""The agent bundle as one zip file, so it reaches a VM in a single upload.

Python runs a zip whose ``__main__.py`` is the bundle's ``agent.py``; that script puts
its own directory (here: the zip) on ``sys.path``, so the agent's modules import from the
zip exactly as from the bundle directory.
"""

from __future__ import annotations

import functools
import io
import zipfile

from rlmbox.sandboxes.bundle import bundle_contents, bundle_digest


@functools.cache
def agent_zip() -> tuple[str, bytes]:
    """(name, bytes) of the zipped bundle; the name carries the bundle's digest."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for inside, data in bundle_contents():
            archive.writestr("__main__.py" if inside == "agent.py" else inside, data)
    return f"rlmbox-agent-{bundle_digest()[:16]}.zip", buffer.getvalue()
