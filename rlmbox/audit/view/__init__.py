"""The trajectory viewer: one self-contained HTML report built from an audit log."""
