"""Mean-field workbench."""
