"""neuralpipe: datanode package."""
