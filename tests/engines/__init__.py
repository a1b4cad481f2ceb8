"""Real serving engines for the `engines` tests (see README.md; install with install.sh)."""
