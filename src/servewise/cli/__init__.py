"""The `servewise` command line: thin commands that parse, call and print."""
