"""Personalizing the digit model: new styles and symbols as concepts (personalize.py trains them,
concept.py stores and applies them, style_eval.py measures them)."""
