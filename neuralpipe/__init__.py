"""neuralpipe: neuralpipe package."""
