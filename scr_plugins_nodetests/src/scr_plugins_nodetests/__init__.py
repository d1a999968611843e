"""Entry-point module of the plugin (filled in by its issue)."""
