"""Model backends shared by the teachers and the eval runners: an OpenAI-compatible chat client
(openai_client), one Hugging Face loader (hf, embedded) and Core ML package discovery (coreml)."""
