"""Tandem: train, register, serve and route LLMs in one loop."""
