"""Networks: the conditional UNet and the digit classifier."""
