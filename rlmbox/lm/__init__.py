"""LM providers: the host-side brokers behind ``llm_query``."""
