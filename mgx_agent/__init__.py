"""mgx_agent: an MGX-style multi-agent software team (Mike, Alex, Bob, Charlie).

The package is usable on its own (``python -m mgx_agent "task"``) and never imports ``backend``.
"""

__version__ = "0.1.0"
