"""ragtune's shared runtime: every service builds on these pieces and nothing else of each other."""
