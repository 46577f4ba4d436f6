"""The consumer function: scheduled and pushed entry points around shared.consumer (docs/consumers.md)."""
