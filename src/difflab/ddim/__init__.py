"""DDIM job: sample from given noise with any pretrained epsilon UNet, MSE against ground truth, eta grid,
slerp vs lerp interpolation, and DDIM inversion. Built on `difflab.diffusion.sampling.DDIMSampler`.

Importing this package is light: torch-free modules only until a function runs.
"""
