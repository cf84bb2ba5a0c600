"""One module per page of the dashboard; each exposes ``render(ctx)``.

Views only lay out widgets and call ``dashboard.services`` (numbers, cached) and
``dashboard.figures`` (plots); they contain no maths.
"""
