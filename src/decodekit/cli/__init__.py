"""The `decodekit` command line (app.py): one module per command, helpers they share in options.py. A user's
mistake prints one line on stderr and exits with code 2."""
