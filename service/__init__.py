"""``hashmatch serve``: the HTTP matching service (FastAPI on uvicorn).

Needs the ``serve`` extra (``pip install 'hashmatch[serve]'``). The map of its modules is in
ARCHITECTURE.md; :func:`hashmatch.service.app.create_app` is the application.
"""
