"""`python -m servewise` is the `servewise` command."""

from servewise.cli.app import main

main()
