"""The `heads` command line: argument parsing, rendering, exit codes."""
