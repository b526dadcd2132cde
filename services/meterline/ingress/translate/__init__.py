"""Translation between wire formats, one package per direction: ``chat_via_anthropic``
(a Chat Completions client, an Anthropic provider), ``messages_via_openai`` (a Messages
client, an OpenAI-compatible provider), and ``language_model_via_openai`` and
``language_model_via_anthropic`` (an AI SDK gateway-provider client, either provider; what
the two share is in ``language_model``)."""
