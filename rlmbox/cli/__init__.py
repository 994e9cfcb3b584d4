"""One module per ``rlmbox`` subcommand group; each exposes ``register(subparsers)``."""
