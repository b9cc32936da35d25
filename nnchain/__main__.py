"""``python -m nnchain`` runs the CLI."""

from nnchain.cli.main import main

main()
