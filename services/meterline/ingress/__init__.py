"""The gateway: authenticates callers, forwards their LLM calls to the configured provider,
and publishes one usage event per finished request."""
