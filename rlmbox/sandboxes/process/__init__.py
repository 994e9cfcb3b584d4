"""Process backend: a local jail (bubblewrap, Landlock, seccomp, cgroups, rlimits)."""
