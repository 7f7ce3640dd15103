"""neuralpipe: mlnode package."""
