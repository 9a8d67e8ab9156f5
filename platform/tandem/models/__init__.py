"""Base models: the tiny local Llama and greedy generation for exact-match evaluation."""
