"""Models: student configs and construction, and the ANE-layout Llama the exporters trace."""
