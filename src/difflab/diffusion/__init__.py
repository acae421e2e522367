"""The diffusion process itself: the noise schedule and the samplers (DDIM/DDPM in sampling.py,
DPM-Solver++(2M) and UniPC in solvers.py), for any epsilon-prediction model."""
