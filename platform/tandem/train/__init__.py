"""Distributed fine-tuning with Ray Train (full or LoRA), registered in MLflow."""
