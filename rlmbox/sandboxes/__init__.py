"""Where untrusted code runs. Never imports ``rlmbox.runtime``."""
