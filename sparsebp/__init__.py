"""Command line of the project (`sparsebp`)."""
