"""The FastAPI application: construction, lifespan, cross-cutting HTTP concerns."""
