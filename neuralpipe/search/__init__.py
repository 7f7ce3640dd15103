"""Search: the query a command builds, how it runs, the table it prints."""
