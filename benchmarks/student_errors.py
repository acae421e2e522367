"""Where a distilled student's error comes from (docs/RESULTS.md §7, "Session 4").

For each student file: its per-jump loss (the distillation loss, StudentTrainer.loss) on training
trajectories and on fresh held-out ones (same recipe, another seed: is the student data-bound?); the
final-image MSE against the teacher's x_0 when the student starts from the teacher's own state at each
jump (how much each jump adds to the final error), on the held-out trajectories and on as many training
ones (does the student generalise?); and, at each --guidance, own-classifier accuracy and
Fréchet distance of 1000 images (`digits generate` + `digits eval`, seed 0).

    .venv/bin/python benchmarks/student_errors.py runs/distill/student.safetensors \
        runs/distill_bal/student.safetensors [--held-out 500] [--seed 777] [--guidance 3 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import _malloc

_malloc.ensure()

import torch  # noqa: E402
from _record import write_record  # noqa: E402  (benchmarks/_record.py)

from difflab.digits.evaluate import evaluate  # noqa: E402
from difflab.digits.generate import GenerateConfig, generate, resolve  # noqa: E402
from difflab.models.digits import load_digit_model  # noqa: E402
from difflab.runtime import finish_machine, machine  # noqa: E402
from difflab.training.distill import DistillConfig, StudentTrainer  # noqa: E402
from difflab.training.trajectories import load_trajectories, make_trajectories, student_timesteps  # noqa: E402


def student_out(student, x, k: int, grid, data) -> torch.Tensor:
    """The student's output (B, 3, 28, 28) at jump k from states x, bf16 as it samples."""
    t = torch.full((len(x),), grid[k])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return student(x, t, data["digit"], data["domain"], data["w"]).float()


def jump_losses(trainer: StudentTrainer, student, data, grid) -> list[float]:
    """Per-jump distillation loss of `student` on trajectories `data` (x: (N, K+1, 3, 28, 28))."""
    out = []
    for k in range(len(grid)):
        x_t, x_next = data["x"][:, k], data["x"][:, k + 1]
        kk = torch.full((len(x_t),), k)
        out.append(trainer.loss(student_out(student, x_t, k, grid, data), x_t, x_next, kk).item())
    return out


def final_mse_from_each_start(trainer: StudentTrainer, student, data, grid) -> list[float]:
    """Final-image MSE vs the teacher's x_0 when the student runs from the teacher's state at jump k0
    (its path: the trainer's own walk, bf16 as it samples)."""
    out = []
    for k0 in range(len(grid)):
        k = torch.full((len(data["x"]),), k0)
        with torch.no_grad():
            x = trainer.walk(student, data["x"][:, k0], k, len(grid) - k, data["digit"], data["domain"], data["w"])
        out.append(((x - data["x"][:, -1]) ** 2).mean().item())
    return out


def quality(path: str, guidance: float) -> dict:
    """Accuracy and Fréchet per domain of 1000 images of the student at `guidance` (seed 0)."""
    model, schedule, _ = load_digit_model(path)
    cfg = resolve(GenerateConfig(model=path, per_digit=50, guidance=guidance), model)
    with tempfile.TemporaryDirectory() as tmp:
        t = generate(Path(tmp) / "g", model, schedule, cfg, overwrite=True, progress=False)
        r = evaluate(Path(tmp) / "g")["domains"]
    return {"total_s": t["total_s"], **{m: {"acc": r[m]["acc"], "fd": r[m]["fd_generated_vs_real"]} for m in r}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("students", nargs="+")
    ap.add_argument("--train-trajectories", default="runs/distill/trajectories")
    ap.add_argument("--held-out", type=int, default=500)
    ap.add_argument("--seed", type=int, default=777, help="the held-out trajectories' seed (training used 0)")
    ap.add_argument("--work", default="runs/student_errors", help="where the held-out trajectories are kept")
    ap.add_argument("--guidance", type=float, nargs="*", default=[3.0])
    ap.add_argument("--out", default="benchmarks/results/student_errors.json")
    args = ap.parse_args()
    info = machine()
    teacher, schedule, _ = load_digit_model(None)
    cfg = DistillConfig(out_dir=args.work, trajectories=args.held_out, traj_batch=args.held_out, seed=args.seed)
    grid = student_timesteps(schedule, cfg.student_steps)
    held = load_trajectories(make_trajectories(cfg, teacher, schedule), grid)
    train = {k: v[:args.held_out] for k, v in load_trajectories(args.train_trajectories, grid).items()}
    trainer = StudentTrainer(cfg, teacher, schedule, held)  # for its loss only
    rows = []
    for path in args.students:
        student, _, _ = load_digit_model(path)
        student.eval()
        row = {"student": path, "jump_loss_train": jump_losses(trainer, student, train, grid),
               "jump_loss_held_out": jump_losses(trainer, student, held, grid),
               "final_mse_from_jump": final_mse_from_each_start(trainer, student, held, grid),
               "final_mse_from_jump_train": final_mse_from_each_start(trainer, student, train, grid),
               "quality": {str(w): quality(path, w) for w in args.guidance}}
        rows.append(row)
        print(json.dumps(row, indent=1), flush=True)
    out = {"machine": finish_machine(info), "grid": grid, "held_out": args.held_out, "seed": args.seed,
           "students": rows}
    write_record(args.out, out)


if __name__ == "__main__":
    main()
