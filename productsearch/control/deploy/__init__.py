"""Deploying generations to running servers: the zero-drop swap (`swap`) and its command line
(`python -m productsearch.control.deploy`)."""
