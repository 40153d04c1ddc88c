"""kimi-student: distil teacher LLMs into small tool-using students and prove them before they ship."""

__version__ = "0.1.0"
