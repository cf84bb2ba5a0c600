"""One module per page of the dashboard; each exposes ``render(ctx)``.

Views only lay out widgets and call the data modules (``dashboard.cache``, ``replay``,
``plotdata``, ``inspection``, ``offer``) and ``dashboard.figures`` (plots); they contain
no maths. Every bundle- or URL-supplied string goes through ``common.plain``.
"""
