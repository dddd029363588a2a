"""The `kyklos` command line (Typer + Rich), a thin shell over kyklos.api."""
