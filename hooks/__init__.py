"""The git hooks DropHost installs into the repositories it hosts (packaged as drophost.hooks)."""
