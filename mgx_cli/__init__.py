"""``mgx``: a terminal client for the MGX Agent API service.

It talks HTTP to a running service (``MGX_API_URL``, ``MGX_API_KEY``) and holds no rule of its
own: creating tasks, starting, following, approving and downloading runs are the REST API's
operations, shown for people. ``python -m mgx_cli`` is the same program as the ``mgx`` script.
"""
