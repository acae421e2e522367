"""Trainers of the digit models: the teacher (train.py: DDPM loss with condition dropout for CFG) and
the few-step student distilled from it (distill.py)."""
