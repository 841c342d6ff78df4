"""The Flask side of the viewer: picture and export routes, the HTTP API, short links, login, caching, limits
and health. Routes are thin: they read the request with :mod:`core` and answer with what :mod:`core` computes.
"""
