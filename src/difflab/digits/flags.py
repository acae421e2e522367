"""What each setting of the digit commands means on the command line: one help entry per config field,
read by difflab.config_args (which takes the defaults from the configs themselves).

Imported by the CLIs when they build their parsers (it loads torch through the configs' modules).
"""

from __future__ import annotations

from difflab.config_args import Flag
from difflab.data import DOMAINS
from difflab.device import DEVICE_HELP
from difflab.diffusion.sampling import parse_guidance_interval
from difflab.diffusion.schedule import BETA_SCHEDULES
from difflab.digits.generate import GENERATE_SAMPLERS
from difflab.models.unet import PREDICTIONS
from difflab.training.common import TIMESTEP_SAMPLINGS

# difflab.digits.generate.GenerateConfig: `digits generate`, `demo`, `digits reverse`, `digits sweep`
GENERATE = {
    "per_digit": "images per digit and domain",
    "model": Flag("'teacher' (CFG: two passes per step), 'student' (distilled: 4 steps, one pass each, ~10x "
                  "faster, the teacher's accuracy over 5 seeds: docs/RESULTS.md §7) or a digit model .safetensors",
                  shown="student; teacher with --concept and for `digits reverse`/`digits sweep`"),
    "guidance": "classifier-free guidance scale w (0: unconditional, 1: conditional, > 1: guided)",
    "steps": Flag("sampler steps", shown="the model's own: student 4, teacher 20, or 10 with dpmpp-2m and unipc"),
    "sampler": Flag("the teacher's sampler (a student runs the DDIM it was distilled for)",
                    choices=GENERATE_SAMPLERS, shown="ddim"),
    "eta": "DDIM eta: 0 is deterministic, 1 DDPM-like",
    "seed": "random seed: the same seed and settings give the same images",
    "batch_size": "images per network batch",
    "bf16": Flag("run the network in float32 (default: bf16 autocast)", flag="--fp32"),
    "guide": Flag("what guidance amplifies: the digit only, or digit and domain", choices=("digit", "both"),
                  shown="both for the teacher with a LoRA style --concept (lower Fréchet distance), else digit"),
    "guidance_interval": Flag("teacher: guide only for timesteps LO <= t <= HI, one pass elsewhere",
                              type=parse_guidance_interval, metavar="LO,HI", shown="every timestep"),
    "karras": "Karras sigmas (dpmpp-2m, unipc)",
    "device": DEVICE_HELP,
    # `--concept` repeats (argparse's append: digits/cli.py adds it by hand with this sentence)
    "concepts": Flag("a concept folder from `digits personalize`; repeat it for a style and a symbol together. "
                     "With --concept only the concepts' images are written: OUT/STYLE/{d}_NNN.png and "
                     "OUT/STYLE_grid.png, OUT/{mnistm,svhn}/SYMBOL_NNN.png, or OUT/STYLE/SYMBOL_NNN.png",
                     flag="--concept", metavar="CONCEPT_DIR", shown="none: the shipped domains and digits"),
}

# difflab.concepts.personalize.PersonalizeConfig: `digits personalize`
PERSONALIZE = {
    "images_dir": Flag("folder of the new concept's images, any size, RGB or grayscale (--as domain: named "
                       "{d}_*.png, the digit first)", positional=True, metavar="IMAGES_DIR"),
    "kind": Flag("what the images teach: a new style of the ten digits, or a new symbol", flag="--as",
                 choices=("domain", "digit")),
    "name": "the concept's name: its folder or file-name prefix in `digits generate --concept` "
            "(not mnistm, svhn or a digit)",
    "out_dir": Flag("the concept folder to write (concept.json and the weights)", flag="--out", metavar="CONCEPT_DIR"),
    "method": Flag("ti: the new embedding row only (base weights untouched); lora: low-rank adapters (peft) + "
                   "the row; finetune: all weights + the row", choices=("ti", "lora", "finetune")),
    "domain": Flag("--as digit: the known domain the symbol is drawn in", choices=DOMAINS, shown="none"),
    "steps": "optimisation steps",
    "lr": Flag("peak AdamW learning rate (warm-up, then cosine decay)", shown="ti 3e-2, lora 1e-3, finetune 2e-5"),
    "row_lr": Flag("peak learning rate of the new embedding row alone (lora, finetune): a faster row beside "
                   "slower weights, as pivotal tuning does", shown="3e-2 (ti: --lr)"),
    "rank": "LoRA rank (--method lora)",
    "batch_size": "images per step",
    "augment_shift": Flag("move each concept image by a random whole-pixel offset of up to PX along each axis "
                          "(edges repeated) every time it is drawn: more variety from a few images (0: off)",
                          metavar="PX"),
    "prior_weight": Flag("share of each batch drawn from the old domains' offline data, against forgetting them "
                         "(lora, finetune; DreamBooth's prior preservation)", shown="lora and finetune 0.25, ti 0"),
    "seed": "random seed: the same seed, images and settings give the same concept",
    "model": "the base model: 'teacher' or a teacher .safetensors (a concept made on the shipped teacher also "
             "applies to the shipped student)",
    "eval_per_digit": "images per digit and old domain generated to measure retained accuracy (0: skip)",
    "bf16": Flag("train in float32 (default: bf16 autocast)", flag="--no-bf16"),
    "device": DEVICE_HELP,
    "overwrite": "replace an existing concept folder",
}

# what the teacher's and the student's training share
_TRAINING = {
    "warmup_steps": "steps of linear learning-rate warm-up",
    "min_lr_ratio": "the cosine decay ends at this fraction of --lr",
    "grad_clip": "clip the gradient norm to this (0: no clipping)",
    "seed": "random seed",
    "ckpt_every": "steps between checkpoints",
    "log_every": "steps between log lines",
}

# difflab.training.config.TrainConfig: `digits train` (its `unet` field: UNET below)
TRAIN = {
    **_TRAINING,
    "out_dir": "run folder: checkpoints, EMA weights and the training log",
    "steps": "optimisation steps",
    "batch_size": "global batch, split over the DDP ranks",
    "lr": "peak AdamW learning rate (warm-up, then cosine decay)",
    "weight_decay": "AdamW weight decay",
    "ema_decay": "decay of the EMA weights that are saved and sampled from, capped by the warm-up (1 + step) / "
                 "(10 + step): D takes effect from step 9 / (1 - D) - 10 (0.999: 8990)",
    "drop_both": "probability of dropping digit and domain together (the unconditional model CFG needs)",
    "drop_digit": "probability of dropping the digit only",
    "drop_domain": "probability of dropping the domain only",
    "bf16": Flag("train in float32 (default: bf16 autocast on the CPU, bf16 or fp16 on CUDA)", flag="--no-bf16"),
    "device": f"{DEVICE_HELP}; under torchrun each process takes cuda:LOCAL_RANK",
    "data_root": Flag("real data folder", shown="offline recipes"),
    "train_size": "synthesised training images per domain (offline recipes only)",
    "schedule": Flag("noise schedule", choices=BETA_SCHEDULES),
    "num_train_timesteps": "diffusion timesteps T",
    "time_budget": Flag("minutes of training: the step count (and the cosine) is fitted to it after 20 timed "
                        "steps and re-fitted every 200, replacing --steps; the run stops with a saved checkpoint "
                        "when time is up",
                        shown="none: --steps decides"),
    "loss_weighting": Flag("eps: DDPM's plain epsilon MSE; min-snr: Min-SNR-gamma weights min(SNR, gamma) / SNR "
                           "(Hang et al. 2023; docs/RESULTS.md's recipe search); or one per domain, e.g. "
                           "mnistm=min-snr,svhn=eps"),
    "min_snr_gamma": "gamma of --loss-weighting min-snr",
    "timestep_sampling": Flag("which timesteps training draws: uniform (DDPM), or log-snr-normal: a log-SNR from "
                              "N(--log-snr-mean, --log-snr-std^2), mapped to the nearest timestep (fewer draws "
                              "where x_t is nearly pure noise)", choices=TIMESTEP_SAMPLINGS),
    "log_snr_mean": "mean of --timestep-sampling log-snr-normal's log-SNR (the linear schedule spans -10.1 to 9.2)",
    "log_snr_std": "standard deviation of --timestep-sampling log-snr-normal's log-SNR",
    "log_snr_share": "share of --timestep-sampling log-snr-normal's draws taken from the normal, the rest "
                     "uniform (1: all from the normal)",
    "extra_ema_decays": Flag("more EMA decays kept beside --ema-decay in the same run, each written as "
                             "OUT/emas/ema_{D}.safetensors (what a run with --ema-decay D saves)", nargs="*",
                             metavar="D", shown="none"),
    "snapshot_minutes": Flag("also keep the EMA weights every this many minutes of training as "
                             "OUT/snapshots/ema_{M}min.safetensors (a time-to-quality curve)", shown="none"),
}
TRAIN_SKIP = ("unet",)

# difflab.models.unet.UNetConfig: the network flags of `digits train`
UNET = {
    "base_channels": "channels of the first UNet level",
    "channel_mults": Flag("channel multiplier of each level (28 -> 14 -> 7 pixels: 1 to 3 levels)", metavar="M"),
    "num_res_blocks": "residual blocks per level",
    "attention_levels": Flag("levels with self-attention in their residual blocks (the middle block always "
                             "has one)", nargs="*", metavar="L", shown="none"),
    "prediction": Flag("what the network's last layer predicts: eps (the noise) or v (Salimans & Ho 2022); "
                       "either way the model returns eps to samplers and losses", choices=PREDICTIONS),
}
# fixed by the data (3 colour channels, 10 digits, 2 domains), the width (groups) and the distiller
UNET_SKIP = ("in_channels", "num_digits", "num_domains", "groups", "guidance_input")

# difflab.training.distill.DistillConfig: `digits distill`
DISTILL = {
    **_TRAINING,
    "out_dir": "run folder (trajectories, checkpoint, student); re-running resumes",
    "teacher": Flag("teacher digit model", shown="the shipped one"),
    "student_steps": "DDIM steps of the student",
    "teacher_steps": "teacher DDIM steps per trajectory (a multiple of --student-steps)",
    "guidance_min": "lowest CFG scale the student learns",
    "guidance_max": "highest CFG scale the student learns",
    "guide": "the teacher's CFG target: digit or both (as `digits generate --guide`)",
    "trajectories": "teacher trajectories",
    "traj_batch": "trajectories per chunk file",
    "steps": "student optimisation steps",
    "batch_size": "student batch",
    "lr": "peak learning rate (cosine)",
    "ema_decay": "decay of the student's EMA weights",
    "bf16": Flag("run in float32 (default: bf16 autocast)", flag="--no-bf16"),
    "device": DEVICE_HELP,
    "jump_weighting": "x0: each jump's error as it is; balanced: each jump's error over its own running "
                      "mean, so every jump gets an equal share",
    "init": Flag("start a new leg from this distillation checkpoint's or student's weights",
                 shown="the teacher's weights"),
    "rollout": "share (0-1) of the rows at later jumps that start from the student's own previous jump "
               "instead of the teacher's state (it learns to correct its own error)",
    "rollout_jumps": "how many of the student's own jumps lead to such a row (3 with 4 steps: from the noise, "
                     "as it samples)",
    "final_weight": "weight of a final-image term: trajectories that go the student's whole path from their "
                    "noise with gradients through every jump, x_0 compared with the teacher's (0: off)",
    "final_batch": "trajectories per update in the final-image term (each costs one pass per student step)",
}

# difflab.digits.classify.ClassifierTrainConfig: `digits train-classifier`
CLASSIFIER = {
    "domain": Flag("the domain whose classifier to train", choices=DOMAINS),
    "out": Flag("output .safetensors", shown="the shipped classifier's file in src/difflab/assets/"),
    "epochs": "passes over the training images",
    "batch_size": "training batch",
    "lr": "peak AdamW learning rate (one-cycle schedule)",
    "train_size": "synthesised training images",
    "seed": "random seed",
    "data_root": Flag("real data folder", shown="offline recipes"),
    "device": DEVICE_HELP,
}
