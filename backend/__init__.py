"""MGX Agent API: the FastAPI service that runs the mgx_agent team as durable background jobs."""

__version__ = "0.1.0"
