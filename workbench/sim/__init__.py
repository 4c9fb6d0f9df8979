"""Monte-Carlo simulation: finite-width torch networks built from the same Spec as the theory,
their initialisations, and probes that measure the theory's order parameters by name."""
