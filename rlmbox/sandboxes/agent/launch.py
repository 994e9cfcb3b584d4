"""The script the sandbox runs: shipped as ``agent.py`` at the bundle's root.

The bundle holds the agent's modules at their package paths (``rlmbox/sandboxes/...``), so
the agent imports itself the same way inside a sandbox as in this source tree. ``-I``
leaves the script's directory off ``sys.path``; this puts the bundle root there.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rlmbox.sandboxes.agent.main import main

main()
