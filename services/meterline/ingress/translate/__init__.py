"""Translation between wire formats, one package per direction: ``chat_via_anthropic``
(a Chat Completions client, an Anthropic provider) and ``messages_via_openai`` (a Messages
client, an OpenAI-compatible provider)."""
