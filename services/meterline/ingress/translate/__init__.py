"""Translation between wire formats: a client speaking one API, a provider another.

``chat_anthropic`` (Chat Completions -> Anthropic: pure functions on whole requests and
answers), ``stream`` (its incremental stream translator), ``messages_openai`` (Messages ->
OpenAI-compatible providers, both) and ``wire`` (sending a translated request upstream)."""
