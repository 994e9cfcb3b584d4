"""The host side: owns sessions and talks to the outside world (LMs, context, audit)."""
