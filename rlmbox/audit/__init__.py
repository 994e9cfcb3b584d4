"""What happened, provably: the hash-chained audit log and its verifier."""
