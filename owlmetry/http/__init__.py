"""The HTTP face of the service: routes, authentication and JSON errors, on aiohttp.

`app.create_app(config)` builds the application; each route module owns one resource.
Nothing here writes SQL: every database question goes through `owlmetry.store`.
"""
