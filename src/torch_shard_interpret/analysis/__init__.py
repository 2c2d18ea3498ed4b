"""Analysis tools that read a trained model's weights and activations for known structure."""

__all__: list[str] = []
