"""v-prediction (`UNetConfig.prediction = "v"`): the network's last layer learns v, the model still returns
eps, so every sampler, loss, distiller and adapter works on it unchanged."""

import pytest
import torch

from difflab.diffusion.schedule import NoiseSchedule
from difflab.errors import DifflabError
from difflab.models.digits import load_digit_model, save_digit_model
from difflab.models.unet import ConditionalUNet, UNetConfig
from difflab.training.config import TrainConfig
from difflab.training.distill import make_student
from difflab.training.jumps import x0_output_steps
from difflab.training.train import Trainer

from .conftest import TINY

V = UNetConfig.from_dict({**TINY.to_dict(), "prediction": "v"})


class Constant(torch.nn.Module):
    """Stands in for the network's last layer: outputs a fixed tensor."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, h):
        return self.value


def _random_v_unet(schedule):
    torch.manual_seed(0)
    model = ConditionalUNet(V, schedule.alphas_cumprod).eval()
    with torch.no_grad():  # zero-initialised layers would make the network's v identically 0
        for p in model.parameters():
            if p.ndim > 1 and not p.any():
                p.normal_(0, 0.05)
    return model


def test_a_perfect_v_network_returns_the_true_noise(monkeypatch):
    """Against diffusers' own v (DDPMScheduler.get_velocity, add_noise): a network whose last layer outputs
    the true v returns the true eps, at every noise level."""
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="v_prediction")
    schedule = NoiseSchedule("linear", 1000)
    assert torch.allclose(schedule.alphas_cumprod, ref.alphas_cumprod.float())
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 28, 28, generator=g) * 2 - 1
    noise = torch.randn(4, 3, 28, 28, generator=g)
    t = torch.tensor([0, 250, 749, 999])
    x_t, v = ref.add_noise(x0, noise, t), ref.get_velocity(x0, noise, t)
    model = ConditionalUNet(V, schedule.alphas_cumprod)
    monkeypatch.setattr(model, "out", Constant(v))
    eps = model(x_t, t, torch.tensor([1, 2, 3, 10]), torch.tensor([0, 1, 2, 0]))
    assert eps.dtype == torch.float32
    assert (eps - noise).abs().max() < 1e-5


def test_a_v_file_loads_back_and_keeps_the_schedule_out_of_the_weights(tmp_path):
    schedule = NoiseSchedule("cosine", 1000)
    model = _random_v_unet(schedule)
    path = tmp_path / "v.safetensors"
    save_digit_model(path, model, schedule)
    loaded, loaded_schedule, meta = load_digit_model(path)
    assert meta["unet"]["prediction"] == "v" and loaded.config == V
    assert "alphas_cumprod" not in model.state_dict()  # a buffer rebuilt from the saved schedule
    assert torch.equal(loaded.alphas_cumprod, loaded_schedule.alphas_cumprod)
    x, t = torch.randn(3, 3, 28, 28), torch.tensor([5, 500, 999])
    d, m = torch.tensor([0, 4, 9]), torch.tensor([0, 1, 1])
    with torch.no_grad():
        assert torch.equal(loaded(x, t, d, m), model(x, t, d, m))
        # eps = sqrt(1 - a) x_t + sqrt(a) v: the network's own output is what is left after the skip
        a = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
        eps_net = ConditionalUNet(TINY)
        eps_net.load_state_dict(model.state_dict())
        assert torch.allclose(model(x, t, d, m), (1 - a).sqrt() * x + a.sqrt() * eps_net(x, t, d, m), atol=1e-6)


def test_a_v_network_without_its_schedule_or_an_unknown_target_is_refused(tmp_path):
    with pytest.raises(DifflabError, match="alphas_cumprod"):
        ConditionalUNet(V)
    with pytest.raises(DifflabError, match="--prediction 'x0'"):
        UNetConfig(prediction="x0")
    # a file claiming a target no network has: one line naming the file
    from difflab.io import load_checkpoint, save_checkpoint

    good, bad = tmp_path / "v.safetensors", tmp_path / "x0.safetensors"
    save_digit_model(good, ConditionalUNet(TINY), NoiseSchedule())
    tensors, meta = load_checkpoint(good)
    save_checkpoint(bad, tensors, {**meta, "unet": {**meta["unet"], "prediction": "x0"}})
    with pytest.raises(DifflabError, match=f"^{bad}: unknown --prediction 'x0'"):
        load_digit_model(bad)


def test_a_v_network_trains_and_its_student_starts_as_its_conditional_branch(tmp_path):
    cfg = TrainConfig(out_dir=str(tmp_path), steps=30, batch_size=8, train_size=40, unet=V, bf16=False,
                      warmup_steps=2, lr=2e-3, ckpt_every=100)
    tr = Trainer(cfg)
    g = torch.Generator().manual_seed(1)  # one fixed batch, judged before and after training
    x0 = tr.images[:32].float().div(127.5).sub(1.0)
    t, noise = torch.randint(1000, (32,), generator=g), torch.randn(x0.shape, generator=g)
    x_t, d, m = tr.schedule.q_sample(x0, t, noise), tr.digits[:32], tr.domains[:32]

    def fixed_batch_loss():
        with torch.no_grad():
            return tr._loss(tr.model(x_t, t, d, m), noise, t).item()

    before = fixed_batch_loss()
    for _ in range(30):
        tr.train_step()
    assert fixed_batch_loss() < 0.9 * before
    teacher = tr.model.eval()
    student = make_student(teacher).eval()
    assert student.config.prediction == "v" and torch.equal(student.alphas_cumprod, teacher.alphas_cumprod)
    x, t, d, m = torch.randn(2, 3, 28, 28), torch.tensor([999, 300]), torch.tensor([3, 7]), torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.equal(student(x, t, d, m, torch.tensor([3.0, 1.0])), teacher(x, t, d, m))
    grid = [999, 749, 499, 249]
    assert x0_output_steps(grid, "v") == [] and x0_output_steps(grid) == [999]
