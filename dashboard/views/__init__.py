"""One module per page of the dashboard; each exposes ``render(ctx)``.

``live`` is the fragment a p move reruns (the slider, ``numbers`` under it, then the page
of ``?view=``, from ``live.PAGES``); ``sidebar`` sets the rest of the state; ``common`` holds
the Context every view gets, whose ``replay()``/``baseline()``/``marks()`` hand the
State's ``Setting`` to ``dashboard.replay`` and ``dashboard.validation``. Views only lay out
widgets and call the data modules (``dashboard.cache``, ``replay``, ``plotdata``,
``inspection``, ``offer``, ``validation``) and the pure figure functions; they contain no
maths. Every bundle- or URL-supplied string goes through ``common.plain``.
"""
