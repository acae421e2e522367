"""Report section: few-step sampling, quality against network evaluations per image.

The same images (seed, layout, batch size: the same starting noise) from a few candidates: the teacher
with DDIM 20 (CFG, what the rest of the report shows), with DPM-Solver++(2M) 10 and with DPM-Solver++(2M)
10 guided only inside an interval, and the distilled student at its own steps (`digits generate
--model student`). Each is made by the same `generate(...)` as the command shown beside it and scored
like `digits eval`; the network evaluations per image are counted, not assumed (benchmarks/bench_digits.py
measures the same candidates on 1000 images).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from difflab.data import DOMAINS
from difflab.digits.evaluate import PRETTY
from difflab.digits.generate import TEACHER_STEPS, GenerateConfig, RowCounter, student_info
from difflab.errors import DifflabError
from difflab.report.context import Context
from difflab.report.digits import gen_flags
from difflab.report.html import command_block, figure, paragraph, table

# sigma in (0.28, 5.42], Kynkäänniemi et al. 2024's interval, mapped to our schedule (docs/digits.md)
INTERVAL = (81, 578)
BASELINE = "teacher-ddim20"  # every speed-up divides its time, measured in the same report
TEACHER_CANDIDATES = [  # (folder name, label, short label for the plot, GenerateConfig overrides)
    (BASELINE, f"teacher DDIM {TEACHER_STEPS} (CFG)", f"DDIM {TEACHER_STEPS}",
     dict(sampler="ddim", steps=TEACHER_STEPS)),
    ("teacher-dpmpp2m-10", "teacher DPM++(2M) 10", "DPM++ 10", dict(sampler="dpmpp-2m", steps=10)),
    ("teacher-dpmpp2m-10-interval", f"teacher DPM++(2M) 10, guided in t {INTERVAL[0]}-{INTERVAL[1]}",
     "DPM++ 10 interval", dict(sampler="dpmpp-2m", steps=10, guidance_interval=INTERVAL)),
]
GRID_DOMAIN = "svhn"  # the student grid shown: the harder domain, where few-step errors show first


@dataclass
class Candidate:
    name: str
    label: str
    short: str
    model: torch.nn.Module
    schedule: object
    cfg: GenerateConfig
    flags: list[str]  # the `digits generate` flags that pick the model (and guidance interval / guide)


def student_file(path) -> Path | None:
    """The student's file: 'student' is the shipped one; None when no student was asked for."""
    from difflab.models.digits import SHIPPED

    return None if path is None else SHIPPED.get(str(path), Path(path))


def load_student(path):
    """(model, schedule) of the student at `path`, or None when there is no such file (the shipped
    student may not exist yet: the section then shows the teacher alone). A file that exists but is not
    a distilled student is the user's mistake: one-line error, before the report does any work."""
    from difflab.models.digits import load_digit_model

    file = student_file(path)
    if file is None or not file.is_file():
        return None
    model, schedule, _ = load_digit_model(file)
    if student_info(model) is None:
        raise DifflabError(f"--student {path}: not a distilled student (a teacher model?); "
                           "make one with `difflab digits distill`")
    return model, schedule


def candidates(ctx: Context) -> tuple[list[Candidate], str | None]:
    """The candidates to run, and a one-line note when the student is left out (and why)."""
    base = ctx.cfg.generate_config()  # the report's per_digit, guidance, seed, batch size, bf16
    out = []
    for name, label, short, over in TEACHER_CANDIDATES:
        flags = ctx.model_flag()
        if over.get("guidance_interval"):
            flags += ["--guidance-interval", ",".join(map(str, over["guidance_interval"]))]
        out.append(Candidate(name, label, short, ctx.model, ctx.schedule, replace(base, **over), flags))
    student = load_student(ctx.student_path)
    if student is None:
        where = "no --student given" if ctx.student_path is None else f"{student_file(ctx.student_path)} not found"
        return out, (f"The distilled student is missing ({where}): teacher candidates only. Train it with "
                     f"`difflab digits distill` and pass --student PATH.")
    model, schedule = student
    info = student_info(model)
    lo, hi = info["guidance_range"]
    if not lo <= base.guidance <= hi:  # resolve() would refuse it: say so rather than fail the report
        return out, (f"The student was distilled for guidance in [{lo:g}, {hi:g}], the report uses "
                     f"{base.guidance:g}: teacher candidates only.")
    cfg = replace(base, model="student", steps=info["steps"], sampler="ddim", guide=info["guide"])
    flags = ["--model", str(ctx.student_path)] + ([] if info["guide"] == "digit" else ["--guide", info["guide"]])
    steps = info["steps"]
    out.append(Candidate("student", f"student DDIM {steps}", f"student {steps}", model, schedule, cfg, flags))
    return out, None


def run_candidate(ctx: Context, c: Candidate) -> dict:
    from difflab.digits.evaluate import evaluate
    from difflab.digits.generate import generate, resolve

    folder = ctx.stage / "fewstep" / c.name
    counter = RowCounter(c.model)
    cfg = resolve(c.cfg, counter)
    timing = generate(folder, counter, c.schedule, cfg, progress=ctx.progress)
    res = evaluate(folder, ctx.classifiers, data_root=ctx.data_root, device=cfg.device)
    d = res["domains"]
    command = ctx.command("digits", "generate", ctx.path(f"fewstep/{c.name}"), "--guidance", f"{cfg.guidance:g}",
                          *gen_flags(cfg), *c.flags, "--overwrite")
    return {"name": c.name, "label": c.label, "short": c.short, "steps": cfg.steps, "sampler": cfg.sampler,
            "guidance_interval": cfg.guidance_interval, "nfe_per_image": counter.rows / timing["images"],
            "seconds": timing["total_s"], "network_s": timing["network_s"], "images": timing["images"],
            "acc": {m: d[m]["acc"] for m in DOMAINS}, "mean_acc": res["mean_acc"],
            "fd": {m: d[m]["fd_generated_vs_real"] for m in DOMAINS},
            "fd_real": {m: d[m]["fd_real_vs_real"] for m in DOMAINS}, "command": command}


def plot_fewstep(rows: list[dict], path, title: str = "") -> None:
    """Two panels against network evaluations per image (log x): mean accuracy, Fréchet per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    from difflab.viz import save_figure

    nfe = [r["nfe_per_image"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)

    def label_points(ax, ys):
        # alternate above/below from left to right: neighbours on the log axis (15, 20) would overlap
        order = sorted(range(len(rows)), key=lambda i: rows[i]["nfe_per_image"])
        for rank, i in enumerate(order):
            ax.annotate(rows[i]["short"], (rows[i]["nfe_per_image"], ys[i]), textcoords="offset points",
                        xytext=(4, 4 if rank % 2 == 0 else -10), fontsize=7)

    acc = [r["mean_acc"] for r in rows]
    a1.plot(nfe, acc, "k^", label="mean of both domains")
    label_points(a1, acc)
    for m, style in zip(DOMAINS, ("o", "s")):
        fd = [r["fd"][m] for r in rows]
        dots = a2.plot(nfe, fd, style, label=f"{PRETTY[m]} generated vs real")[0]
        # the noise level of the distance at this sample size: the same for every candidate
        a2.axhline(rows[0]["fd_real"][m], color=dots.get_color(), ls="--", lw=1, label=f"{PRETTY[m]} real vs real")
        label_points(a2, fd)
    a1.set(ylabel="classifier accuracy (higher: more correct)", ylim=(0, 1.02))
    a2.set(ylabel="Fréchet distance (lower: closer to real)")
    for a in (a1, a2):
        # log x: 4 and 40 evaluations are a factor apart, as their costs are; ticks at the measured values
        a.set_xscale("log")
        a.xaxis.set_major_locator(FixedLocator(sorted(set(nfe))))
        a.xaxis.set_major_formatter(ScalarFormatter())
        a.xaxis.set_minor_locator(NullLocator())
        a.set_xlim(min(nfe) / 1.5, max(nfe) * 2.2)  # room for the labels right of the last point
        a.set_xlabel("network evaluations per image (log scale)")
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    save_figure(fig, path, title)


def fewstep(ctx: Context) -> str:
    todo, note = candidates(ctx)
    rows = [run_candidate(ctx, c) for c in todo]
    base = next(r for r in rows if r["name"] == BASELINE)
    for r in rows:
        r["speedup"] = base["seconds"] / r["seconds"]
    n = rows[0]["images"] // len(DOMAINS)
    ctx.numbers["fewstep"] = {"baseline": BASELINE, "candidates": rows, "student_missing": note,
                              "student": None if ctx.student_path is None else str(ctx.student_path)}
    plot_fewstep(rows, ctx.stage / "fewstep" / "fewstep.png",
                 f"{n} images per domain, guidance {ctx.cfg.guidance:g}, seed {ctx.cfg.seed}")
    floor = ", ".join(f"{PRETTY[m]} {rows[0]['fd_real'][m]:.3f}" for m in DOMAINS)
    parts = [figure(
        "fewstep/fewstep.png", "accuracy and Fréchet distance against network evaluations per image",
        f"Each point is one way of making the same {n} images per domain (same seeds and layout, guidance "
        f"{ctx.cfg.guidance:g}), placed at the network evaluations it spent per image (log scale): mean digit "
        f"accuracy of the domain classifiers (left) and Fréchet distance to real images per domain (right; "
        f"dashed: two real samples of the same size, the distance's noise level). Up and left is better on "
        f"the left panel, down and left on the right. The plot is drawn by the report from the numbers in "
        f"report.json (numbers.fewstep); each candidate's images come from the command listed below the "
        f"table.", ctx.report_command)]
    head = ["candidate", "NFE/image", "seconds", "speed-up",
            *(f"{PRETTY[m]} acc." for m in DOMAINS), *(f"{PRETTY[m]} Fréchet" for m in DOMAINS)]
    body = [[r["label"], f"{r['nfe_per_image']:g}", f"{r['seconds']:.1f}", f"{r['speedup']:.1f}x",
             *(f"{r['acc'][m]:.4f}" for m in DOMAINS), *(f"{r['fd'][m]:.3f}" for m in DOMAINS)] for r in rows]
    parts.append(table(head, body, (
        f"NFE/image: rows through the network per image, counted: a CFG step runs the conditional and "
        f"unconditional predictions as one batch of 2 rows per image, so it costs 2; with the guidance "
        f"interval only steps with {INTERVAL[0]} <= t <= {INTERVAL[1]} are guided and the others cost 1; the "
        f"student takes the guidance scale as an input and costs 1 per step. Seconds: wall time of "
        f"`digits generate` (sampling, PNGs, grids; not the evaluation) in this run on this machine; speed-up "
        f"= the teacher DDIM {TEACHER_STEPS} time / the candidate's, measured in this same report, so it "
        f"carries across machines better than the seconds do. {n} images per domain: one mistake moves an "
        f"accuracy by {100 / n:.2f} points; Fréchet real vs real: {floor}.")))
    if note:
        parts.append(paragraph(note, "note"))
    parts.append(paragraph("Regenerate each candidate's images (each folder also gets the eval.json that "
                           "`difflab digits eval FOLDER` writes when run on it):"))
    for r in rows:
        parts += [paragraph(f"{r['label']}:"), command_block(r["command"])]
    student = next((r for r in rows if r["name"] == "student"), None)
    if student is not None:
        m, per = GRID_DOMAIN, n // 10
        parts.append(figure(
            f"fewstep/student/{m}_grid.png", f"{PRETTY[m]} digits of the student",
            f"The distilled student's {PRETTY[m]} digits: one row per digit 0-9, the first {min(10, per)} of the "
            f"{per} images per digit, each made in {student['nfe_per_image']:g} network evaluations (DDIM "
            f"{student['steps']} steps, guidance {ctx.cfg.guidance:g} given to the network as an input instead "
            f"of a second pass). The starting noise is the same as for the teacher's grids above; the "
            f"trajectory is the student's own. All {per * 10} images are in fewstep/student/{m}/.",
            student["command"]))
    if len(rows) > 1:
        best = min(rows[1:], key=lambda r: r["seconds"])
        parts.append(paragraph(f"Fastest candidate: {best['label']}, {best['speedup']:.1f}x the teacher DDIM "
                               f"{TEACHER_STEPS} speed at {best['nfe_per_image']:g} instead of "
                               f"{base['nfe_per_image']:g} network evaluations per image.", "note"))
    return "".join(parts)
