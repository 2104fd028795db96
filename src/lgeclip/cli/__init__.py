"""Command-line interface: a thin table from subcommand to API function."""
