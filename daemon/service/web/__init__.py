"""The HTTP side on uvicorn + Starlette: the app, the review page's assets, the server."""
