"""Every NNI-style trainer refuses misuse in its constructor or at the start of ``fit()`` with one
error naming the argument or the choice, never a torch traceback some steps in or a silent wrong
result: ``export()`` before ``fit()``, a model without choices, candidates of different output
shapes, inputs of different shapes, a dataset that is not one, a controller step of 0 samples."""
import pytest
import torch
from torch.utils.data import TensorDataset

import supernet.oneshot.nn as nn
from supernet.oneshot import DartsTrainer, EnasTrainer, FBNetTrainer, ProxylessTrainer, SinglePathTrainer
from supernet.search.config import SearchConfig


class Net(nn.Module):
    def __init__(self, widen=False, skip=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        # widen: a candidate with 8 output channels among 4-channel ones
        self.op = nn.LayerChoice([nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 8 if widen else 4, 1)], label="op")
        self.pool = nn.AvgPool2d(2) if skip else None
        self.skip = nn.InputChoice(2, 1, label="skip") if skip else None
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.op(x)
        if self.skip is not None:
            y = self.skip([x, self.pool(y)])  # (B, 4, 8, 8) and (B, 4, 4, 4)
        return self.fc(y.mean((2, 3))[:, :4])


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


def data(n=32):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g))


def make(name, model, **kw):
    """Trainer ``name`` on ``model`` with the fewest arguments its signature takes."""
    opt = kw.pop("optimizer", None) or torch.optim.SGD(model.parameters(), 0.05)
    common = dict(loss=torch.nn.CrossEntropyLoss(), metrics=None, optimizer=opt, num_epochs=1, batch_size=8,
                  workers=0)
    if name == "SinglePathTrainer":
        kw.setdefault("dataset_valid", data(8))
        search = SearchConfig(population=2, generations=1, topk=1, mutations=1, crossovers=1, recal_batches=1,
                              recal_batch_size=4, progress=False)
        return SinglePathTrainer(model, dataset_train=kw.pop("dataset", data()), search=search, **common, **kw)
    if name == "EnasTrainer":
        return EnasTrainer(model, reward_function=lambda logits, y: 0.0, dataset=kw.pop("dataset", data()), **common,
                           **kw)
    cls = {"DartsTrainer": DartsTrainer, "ProxylessTrainer": ProxylessTrainer, "FBNetTrainer": FBNetTrainer}[name]
    return cls(model, dataset=kw.pop("dataset", data()), **common, **kw)


TRAINERS = ["SinglePathTrainer", "DartsTrainer", "EnasTrainer", "ProxylessTrainer", "FBNetTrainer"]
CHOOSING = TRAINERS[1:]  # the trainers whose strategy chooses the architecture while it trains


@pytest.mark.parametrize("name", CHOOSING)
def test_export_before_fit_says_call_fit_first(name):
    trainer = make(name, Net())
    with pytest.raises(RuntimeError, match=rf"{name}.export\(\) has no architecture before training: call fit\(\) "
                                           rf"first"):
        trainer.export()


@pytest.mark.parametrize("name", TRAINERS)
def test_a_model_without_choices_is_refused_by_the_constructor(name):
    with pytest.raises(ValueError, match=f"{name}: the model has no LayerChoice or InputChoice, so there is nothing "
                                         f"to search"):
        make(name, Plain())


@pytest.mark.parametrize("name", TRAINERS)
def test_candidates_of_different_output_shapes_are_named_at_the_start_of_fit(name):
    model = Net(widen=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = make(name, model)
    with pytest.raises(ValueError, match=rf"{name}: LayerChoice 'op' candidates give outputs of different shapes on "
                                         rf"one batch \('0' \(2, 4, 8, 8\), '1' \(2, 8, 8, 8\)\)"):
        trainer.fit()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # before any step


@pytest.mark.parametrize("name", ["SinglePathTrainer", "DartsTrainer", "EnasTrainer", "ProxylessTrainer"])
def test_inputs_of_different_shapes_are_named_at_the_start_of_fit(name):
    trainer = make(name, Net(skip=True))
    with pytest.raises(ValueError, match=rf"InputChoice 'skip' gets inputs of different shapes on one batch "
                                         rf"\(\(2, 4, 8, 8\), \(2, 4, 4, 4\)\); reduction 'sum' needs them equal"):
        trainer.fit()


def test_a_candidate_that_cannot_take_the_input_is_named():
    model = Net()
    model.op.candidates["1"] = nn.Conv2d(5, 4, 1)  # expects 5 channels, gets 4
    model.op._list[1] = model.op.candidates["1"]
    with pytest.raises(ValueError, match=r"LayerChoice 'op' candidate '1' fails on the choice's input of shape "
                                         r"\(2, 4, 8, 8\): "):
        make("DartsTrainer", model).fit()


@pytest.mark.parametrize("name", TRAINERS)
def test_a_dataset_or_optimizer_that_is_not_one_is_refused_by_the_constructor(name):
    dataset = "dataset_train" if name == "SinglePathTrainer" else "dataset"
    with pytest.raises(TypeError, match=f"{name}: {dataset} must be a Dataset with len"):
        make(name, Net(), dataset=None)
    with pytest.raises(TypeError, match=f"{name}: optimizer must be a torch.optim.Optimizer"):
        make(name, Net(), optimizer="sgd")


def test_single_path_without_a_validation_set_is_refused_by_the_constructor():
    with pytest.raises(TypeError, match=r"dataset_valid \(export\(\) scores each candidate on it\) must be a Dataset"):
        make("SinglePathTrainer", Net(), dataset_valid=None)


def test_a_controller_step_of_no_samples_is_refused():
    with pytest.raises(ValueError, match="ctrl_steps_aggregate must be a positive int .* got 0"):
        make("EnasTrainer", Net(), ctrl_steps_aggregate=0)


def test_nni_2_positional_arguments_reach_their_parameters():
    model = Net()
    trainer = SinglePathTrainer(model, torch.nn.CrossEntropyLoss(), None, torch.optim.SGD(model.parameters(), 0.1), 1,
                                data(), data(8), 8, 0)  # batch_size, workers as NNI 2.x orders them
    assert trainer.batch_size == 8 and trainer.workers == 0


def test_numpy_integers_are_taken_as_ints():
    import numpy as np
    from supernet.oneshot import SinglePathTrainer
    model = _numpy_model()
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    trainer = SinglePathTrainer(model, torch.nn.CrossEntropyLoss(), None, torch.optim.SGD(model.parameters(), lr=0.1),
                                np.int64(1), data, data, batch_size=np.int64(300), workers=0)
    assert type(trainer.batch_size) is int and type(trainer.search.val_batch_size) is int


def _numpy_model():
    from supernet import LayerChoice
    return torch.nn.Sequential(LayerChoice([torch.nn.Linear(4, 4), torch.nn.Identity()], label="a"),
                               torch.nn.Linear(4, 2))
