"""What code may do: policy files, decisions, presets."""
