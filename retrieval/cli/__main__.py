"""`python -m retrieval.cli` runs the `twin` command line."""

from . import main

main()
