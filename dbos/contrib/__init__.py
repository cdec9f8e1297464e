"""Framework integrations; each imports its framework lazily, so the core needs none."""
