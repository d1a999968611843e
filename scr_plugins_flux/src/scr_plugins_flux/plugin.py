"""scr plugin registration."""
