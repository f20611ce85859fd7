"""Stand-ins for external services (a fake OpenAI-compatible server), used by tests and benchmarks."""
