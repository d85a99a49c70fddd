"""Test doubles that work at the protocol level (a fake LLM server on a loopback port)."""
