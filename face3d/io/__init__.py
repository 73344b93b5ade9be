"""File input/output, kept apart from the math."""
