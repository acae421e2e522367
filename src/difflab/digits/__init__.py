"""The conditional-digits job: train, generate, evaluate (MNIST-M + SVHN-style, digit + domain CFG)."""
