"""The API's routes, one module per area; each ``install(app, ctx)`` adds its routes to the
application over an :class:`~fiat.api.context.ApiContext` (what every route shares)."""
