"""Chat Completions clients calling models of Anthropic providers: ``translation`` (whole
requests and answers), ``stream`` (the stream, translated as it passes), ``forward`` (the
request sent and answered)."""
