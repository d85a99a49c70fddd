"""Pydantic request and response models (``<Resource>Create``, ``<Resource>Update``, ``<Resource>Read``)."""
