"""What the service tells operators about itself: structured logs with request and run context
(``logs``), Prometheus metrics (``metrics``, ``run_metrics``), and the per-request middleware that
ties both to every HTTP request (``http``)."""
