"""Translation between wire formats: a client speaking one API, a provider another.

``chat_anthropic`` (pure functions on whole requests and answers), ``stream`` (the
incremental stream translator) and ``wire`` (sending a translated request upstream)."""
