"""AI SDK language-model calls (``POST /v3/ai/language-model``) to models of
OpenAI-compatible providers: ``translation`` (whole requests and answers), ``stream`` (the
stream, translated as it passes), ``forward`` (the request sent and answered)."""
