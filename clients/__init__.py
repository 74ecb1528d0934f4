"""Client package of the product search service: gRPC only (tritonclient, numpy). contract.py is
the public API's tensor names and packing, connection.py the TLS, deadline and retry policy; search,
catalog and index are the clients and CLIs built on them. Installable alone: `pip install ./clients`.
Never imports the server package. (The evaluation harness, a user of this package, is
productsearch/evaluation/.)
"""
