"""The app: routes, the dependency plan, parameters, validation, middleware, lifespan.

It turns one `Request` into a `Response` and the work left after it, and never
touches a socket or the server.

* `application`: `App`, and `App.handle`, the one place app errors become responses.
* `routing`: `APIRouter` and the route decorators shared with `App`.
* `paths`: path templates; (method, path) to an endpoint.
* `dependencies`, `sources`: the plan built at registration, walked per request.
* `validation`, `converters`, `pydantic_support`, `response_models`: checking
  and converting values (rawbg's own validator; pydantic when installed).
* `error_responses`: from an exception to the app's handler and its response.
* `middleware_stack`, `lifespan`, `route_listing`: the middleware around the
  routing, start-up and shutdown, ``--routes``.
"""
