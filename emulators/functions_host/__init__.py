"""A local Azure Functions host for HTTP-triggered Python functions (v1 programming model).

Azure Functions Core Tools cannot be installed everywhere; this serves the same URLs as
``func start``: every top-level folder whose function.json has an ``httpTrigger`` binding, at
``http://localhost:<port>/<routePrefix>/<route or FunctionName>``, with the same
``azure.functions.HttpRequest``/``HttpResponse``/``Context`` objects the Python worker passes.

Run it with ``python -m emulators.functions_host [--port 7071] [--root DIR]``.

Behaviour, and where it deliberately differs from Core Tools:

* ``local.settings.json`` ``Values`` go into the environment with Core Tools' rule: a variable
  already set (non-empty) in the real environment wins. ``Host.LocalHttpPort``, ``Host.CORS`` and
  ``Host.CORSCredentials`` are honoured; ``--port``/``--cors`` override them.
* ``authLevel`` ``function``/``admin``: like Core Tools, keys are not checked locally (any ``code``
  query parameter or ``x-functions-key`` header is accepted, and so is none). ``--require-keys``
  demands a non-empty key (401 otherwise) to catch clients that forget it.
* A path that matches a function whose ``methods`` exclude the request method: the real host
  answers 404 (the method is part of the route); this host answers **405** with an ``Allow``
  header and ``{"error": {"code": "method_not_allowed", "message": ...}}``, which is clearer.
* Unknown route: 404, empty body (as the host). Body over 100 MB (Kestrel limit Core Tools sets):
  413 with a JSON error. A function that raises: 500, empty body, traceback in the log only.
* It binds 127.0.0.1 by default (``--host 0.0.0.0`` to listen everywhere as ``func start`` does).
"""
