"""Typed wire models of the REST API, one module per resource.

Every body the gateway accepts is a pydantic model built from the bounded types in
:mod:`ragtune_gateway.schemas.common`, so a request is refused with 400 (naming the field) before
any work is done: text without NUL bytes or unpaired surrogates, numbers inside the range of the
protobuf field they reach, lists and JSON objects bounded in size and depth.
"""
