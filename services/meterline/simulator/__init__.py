"""A fake upstream LLM provider speaking the OpenAI Chat Completions, OpenAI Responses and
Anthropic Messages wire formats, with deterministic usage and faults on demand.

``create_app()`` in ``meterline.simulator.app`` builds the ASGI app; its docstring lists the
endpoints and the ``x-simulator-*`` fault headers, ``meterline.simulator.usage`` the usage
rules."""
