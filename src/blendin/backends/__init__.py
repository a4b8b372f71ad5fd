"""Model backends. Each backend gives a ``Model`` (a tokenizer plus sessions) and states its capabilities.

- ``hf``: local transformers models on torch (Hugging Face ids, folders, GGUF files); full distributions.
- ``fake``: scripted models with exact distributions, for tests.
"""
