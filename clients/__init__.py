"""Client package of the product search service: gRPC only (tritonclient, numpy; PIL for the
evaluation pictures). contract.py is the public API's tensor names and packing, connection.py the
TLS, deadline and retry policy; search, index, demo and evaluate are clients and CLIs built on
them. Installable alone: `pip install ./clients`. Never imports the server package.
"""
