"""Triangle Lab's Gradio page."""
