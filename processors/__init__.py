"""neuralpipe: processors package."""
