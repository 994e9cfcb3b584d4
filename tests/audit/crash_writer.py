"""A writer process for the kill -9 test: appends forever, printing each acknowledged seq.

Run as ``python crash_writer.py DIR SEED``; a line ``<seq>`` on stdout means every record up
to ``seq`` was reported durable by ``sync()``.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from rlmbox.audit.log import AuditLog


def main() -> None:
    directory, seed = Path(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    log = AuditLog(directory, checkpoint_every=25, max_file_bytes=8 * 1024 * 1024)
    print("ready", flush=True)
    while True:
        for _ in range(rng.randint(1, 20)):
            # Large records make a write cut short by the kill more likely.
            pad = "x" * rng.choice((10, 1000, 20000, 100_000))
            bodies = {"code": f"cell {rng.random()}"} if rng.random() < 0.2 else None
            record = log.append("code.exec", session="s", pad=pad, bodies=bodies)
        log.sync()
        print(record["seq"], flush=True)


if __name__ == "__main__":
    main()
