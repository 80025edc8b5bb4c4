"""The gateway's use cases, one module per resource: they take the runtime and wire models, call
the repositories and the typed downstream clients, return response models, and raise
:class:`~ragtune_gateway.errors.ApiError`. Services may use one another; routers call them."""
