"""Anthropic Messages clients calling models of OpenAI-compatible providers:
``translation`` (whole requests and answers), ``stream`` (the stream, translated as it
passes), ``forward`` (the request sent and answered)."""
