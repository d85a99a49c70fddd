"""Business rules of the service. No HTTP types here: routers translate, services decide."""
