"""Retrieval evaluation of every search method on a BEIR collection (``neuralpipe eval``)."""
