"""Ingest processors: text_embedding, sparse_encoding, text_chunking."""
