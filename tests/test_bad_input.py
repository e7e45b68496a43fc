"""The bad-input table (README, Troubleshooting): each case gets one clear line on stderr, exit 2,
no traceback, and leaves an existing run directory exactly as it was."""
import hashlib
import json
import shutil

import pytest
import yaml

from supernet.cli import main
from supernet.train import load_checkpoint

from .data.test_data import _write_cifar, _write_folder
from .test_pipeline import TINY


def snapshot(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    run = root / "run"
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run), "steps=2"]) == 0
    assert main(["search", "--run-dir", str(run), "generations=1"]) == 0
    return root, run


def _cifar_missing(tmp):
    _write_cifar(tmp / "cifar", skip=("data_batch_3",))
    return ["data.name=cifar10", f"data.root={tmp / 'cifar'}"]


def _corrupt_image(tmp):
    _write_folder(tmp / "imgs")
    (tmp / "imgs" / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return ["data.name=imagefolder", f"data.root={tmp / 'imgs'}", "data.val_per_class=1", "data.image_size=32"]


def _empty_folder(tmp):
    (tmp / "empty" / "train").mkdir(parents=True)
    return ["data.name=imagefolder", f"data.root={tmp / 'empty'}"]


A4 = {f"layer_{i}": 0 for i in range(4)} | {f"channel_{i}": 0 for i in range(4)}

# (id, command builder(tmp, run) -> argv, the message it must print, whether it runs on the trained run)
CASES = [
    ("missing data folder", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                          "data.name=cifar10", f"data.root={t / 'nowhere'}"],
     "is missing data_batch_1", False),
    ("empty image folder", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                         *_empty_folder(t)], "has no class subfolders", False),
    ("corrupt image", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                    *_corrupt_image(t), "steps=3", "batch_size=4"], "broken.jpg", False),
    ("float image", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new", "steps=3",
                                  "batch_size=4", *__import__(__package__ + ".data.test_imagefolder_reliability",
                                                              fromlist=["_"]).bad_folder(t, "float")],
     ".tif has mode F (32-bit float pixels), which has no agreed 0..255 scale", False),
    ("32-bit image beyond 16 bits", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                                  "steps=3", "batch_size=4", *__import__(
                                                      __package__ + ".data.test_imagefolder_reliability",
                                                      fromlist=["_"]).bad_folder(t, "int32")],
     ".tif has mode I (32-bit integer pixels) with values -5..70000 outside 0..65535", False),
    ("one image in two classes", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                               *__import__(__package__ + ".data.test_imagefolder_reliability",
                                                           fromlist=["_"]).bad_folder(t, "two classes")],
     "train/dog/0.png are the same file, in classes 'cat' and 'dog'; an image has one label", False),
    ("test image also in train", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                               *__import__(__package__ + ".data.test_imagefolder_reliability",
                                                           fromlist=["_"]).bad_folder(t, "val in train")],
     "val/dog/seen.png is the same file as", False),
    ("class folder of linked folders only", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir",
                                                          t / "new", *__import__(
                                                              __package__ + ".data.test_imagefolder_reliability",
                                                              fromlist=["_"]).bad_folder(t, "links only")],
     ".webp; did not follow the linked folder", False),
    ("CIFAR folder missing a batch", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir",
                                                   t / "new", *_cifar_missing(t)], "data_batch_3", False),
    ("unknown config key", lambda t, r: ["search", "--run-dir", r, "populaton=3"],
     "unknown key 'search.populaton'; valid keys: algorithm, population", True),
    ("wrong value type", lambda t, r: ["search", "--run-dir", r, "population=many"],
     "search.population must be an integer, got 'many'", True),
    ("negative size", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                    "batch_size=-4"], "batch_size must be positive, got -4", False),
    ("zero size", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                "data.image_size=0"], "data.image_size=0 is invalid", False),
    ("arch: unknown label", lambda t, r: ["retrain", "--run-dir", r, "--arch", json.dumps({**A4, "layer_9": 1})],
     "unknown label(s) 'layer_9'; valid labels: layer_0..layer_3: 0..3; channel_0..channel_3: 0..7", True),
    ("arch: missing label", lambda t, r: ["retrain", "--run-dir", r, "--arch",
                                          json.dumps({k: v for k, v in A4.items() if k != "channel_2"})],
     "missing label(s) 'channel_2'", True),
    ("arch: index out of range", lambda t, r: ["retrain", "--run-dir", r, "--arch", json.dumps({**A4, "layer_1": 4})],
     "label 'layer_1' index 4 is out of range; valid: 0..3", True),
    ("arch: wrong length", lambda t, r: ["retrain", "--run-dir", r, "--arch", "[0, 1, 2]"],
     "a list architecture needs 8 values (one per label), got 3", True),
    ("arch: a directory", lambda t, r: ["retrain", "--run-dir", r, "--arch", r / "search"],
     "search is a directory; give a JSON file such as", True),
    ("info --arch: a directory", lambda t, r: ["info", "shufflenet-cifar", "--arch", r],
     "run is a directory; give a JSON file such as", False),
    ("arch: nested 100,000 deep", lambda t, r: ["retrain", "--run-dir", r, "--arch", __import__("tests.bad_scenes", fromlist=["_"]).deep_arch(t)],
     "deep.json is nested too deeply to parse", True),
    ("arch: not UTF-8", lambda t, r: ["retrain", "--run-dir", r, "--arch", __import__("tests.bad_scenes", fromlist=["_"]).latin1_arch(t)],
     "latin1.json is not UTF-8 text", True),
    ("config: YAML syntax error", lambda t, r: ["train-supernet", "--config", __import__("tests.bad_scenes", fromlist=["_"]).broken_yaml(t), "--run-dir", t / "new"],
     "broken.yaml is not valid YAML at line 4, column 11: mapping values are not allowed here", False),
    ("config: not UTF-8", lambda t, r: ["train-supernet", "--config", __import__("tests.bad_scenes", fromlist=["_"]).latin1_yaml(t), "--run-dir", t / "new"],
     "latin1.yaml is not UTF-8 text", False),
    ("config: empty file", lambda t, r: ["train-supernet", "--config", __import__("tests.bad_scenes", fromlist=["_"]).empty_yaml(t), "--run-dir", t / "new"],
     "empty.yaml is empty; give at least one section", False),
    ("seed out of range", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                        f"seed={2**70}"], f"seed={2**70} is invalid: a seed must be an integer in 0..2**63-1", False),
    ("--resume with --force", lambda t, r: ["search", "--run-dir", r, "--resume", "--force"],
     "argument --force: not allowed with argument --resume", True),
    ("demo into an existing run", lambda t, r: ["demo", "--run-dir", r], "already holds a run; give the demo a new --run-dir", True),
    ("export opset too old", lambda t, r: ["export", "--run-dir", r, "opset=7"],
     "export.opset=7 is not supported: this torch", True),
    ("export opset too new", lambda t, r: ["export", "--run-dir", r, "opset=99"],
     "export.opset=99 is not supported: this torch", True),
    ("image size beyond memory", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                               "data.image_size=100000"], "data.image_size=100000 with 128 synthetic images", False),
    ("recalibration beyond memory", lambda t, r: ["search", "--run-dir", r, "--force", f"recal_batches={10**9}"],
     "1,000,000,000 batches of 8 images of 3x16x16 for BN recalibration would take about", True),
    ("checkpoints without meta", lambda t, r: __import__("tests.bad_scenes", fromlist=["_"]).checkpoints_without_meta(t, r),
     "last.pt has no 'meta' entry (incomplete, or not written by supernet)", True),
    ("checkpoint that safe loading refuses", lambda t, r: __import__("tests.bad_scenes", fromlist=["_"]).checkpoints_with_objects(t, r),
     "last.pt holds the Python object argparse.Namespace, which safe loading (weights_only=True) refuses", True),
    ("every checkpoint damaged", lambda t, r: __import__("tests.bad_scenes", fromlist=["_"]).checkpoints_truncated(t, r),
     "no usable checkpoint in", True),
    ("unsatisfiable constraint", lambda t, r: ["search", "--run-dir", r, "--force", "constraints=[flops<=1000]"],
     "constraint flops <= 1000 cannot be met: this space's flops range is", True),
    ("latency constraint without a table", lambda t, r: ["search", "--run-dir", r, "--force", "constraints=[latency<=2ms]"],
     "search.constraints 'latency<=2ms' needs a latency table for this target: build one with 'supernet latency --run-dir", True),
    ("latency table of another model", lambda t, r: ["search", "--run-dir", r, "--force", "constraints=[latency<=2ms]",
                                                     f"latency.table={__import__('tests.bad_scenes', fromlist=['_']).other_latency_table(t)}"],
     "other-latency.json was measured for options", True),
    ("NaN loss", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "nan",
                               "optim.lr=1e30", "steps=8", "checkpoint_every=2"], "loss became nan at step", False),
    ("resume a run that does not exist", lambda t, r: ["train-supernet", "--run-dir", t / "nowhere", "--resume"],
     "nothing to resume: ", False),
    ("resume with another space", lambda t, r: ["train-supernet", "--run-dir", r, "--resume",
                                                "space.options.width_mult=0.5"],
     "was made for a different model: options.width_mult: checkpoint has 0.25, now 0.5", True),
    ("run dir not writable", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir",
                                           t / "tiny.yaml" / "sub"], "cannot write the run directory", False),
    ("run dir a symbolic link loop", lambda t, r: __import__("tests.bad_scenes", fromlist=["_"]).run_dir_link_loop(t),
     "loop-a is a symbolic link to nowhere", False),
    ("evaluate over an earlier eval.json", lambda t, r: (r.joinpath("eval.json").write_text("{}"), ["evaluate", "--run-dir", r])[1],
     "eval.json already exists; pass --force to replace it", False),
    ("later stage before the first", lambda t, r: ["retrain", "--run-dir", t / "empty-run"], "has no config.yaml", False),
    ("retrain setting given to the supernet", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir",
                                                            t / "new", "bn_recal_batches=5"],
     "'supernet.bn_recal_batches' is not a supernet setting: bn_recal_batches belongs to retrain.bn_recal_batches", False),
    ("sampling setting given to retrain", lambda t, r: ["retrain", "--run-dir", r, "sampling.constraints=[flops<=1M]"],
     "'retrain.sampling' is not a retrain setting: path sampling belongs to the strategy section", True),
    ("unknown strategy", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                       "strategy.name=darts2"], "unknown strategy 'darts2'; strategy.name must be one of spos, fairnas", False),
    ("key of another strategy", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                              "strategy.name=fairnas", "strategy.max_tries=3"],
     "unknown key 'strategy.max_tries' for strategy 'fairnas'; valid keys: name", False),
    ("resume with another strategy", lambda t, r: ["train-supernet", "--run-dir", r, "--resume", "strategy.name=fairnas"],
     "was made for a different model: strategy: checkpoint has 'spos', now 'fairnas'", True),
    # DARTS and the retrain recipe
    ("auxiliary loss without an auxiliary head", lambda t, r: ["retrain", "--run-dir", r, "--force", "aux_weight=0.4"],
     "retrain.aux_weight=0.4 needs a network with an auxiliary head: set retrain.space_options.auxiliary=true", True),
    ("drop-path on a space without it", lambda t, r: ["retrain", "--run-dir", r, "--force", "drop_path=0.2"],
     "retrain.drop_path=0.2 needs a network with drop-path", True),
    ("skip cap on a space without skip_connect", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir",
                                                               t / "new", "strategy.name=darts", "strategy.max_skips=2"],
     "max_skips caps 'skip_connect' ops in labels 'normal/...' (the darts space); this space has none", False),
    # one owner per run directory; --force and --resume keep the run as it was
    ("run dir in use", lambda t, r: __import__(__package__ + ".test_lock", fromlist=["_"]).hold_lock(r)
     + ["search", "--run-dir", r, "--force"],
     "is in use by supernet pid ", True),
    ("NaN setting with --force on a trained run", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir",
                                                                r, "--force", "optim.lr=.nan"],
     "supernet.optim.lr must be a finite number, got nan", True),
    ("inf setting", lambda t, r: ["retrain", "--run-dir", r, "optim.lr=inf"],
     "retrain.optim.lr must be a finite number, got inf", True),
    ("NaN loss under --force", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", r, "--force",
                                             "optim.lr=1e30", "checkpoint_every=100"],
     "--force changed nothing: the earlier supernet is still in", True),
    ("resume with another seed", lambda t, r: ["train-supernet", "--run-dir", r, "--resume", "supernet.seed=7"],
     "was trained with other settings (supernet.seed: the run used 0, now 7); resume with the saved ones", True),
    ("resume with another batch size", lambda t, r: ["train-supernet", "--run-dir", r, "--resume", "batch_size=8"],
     "(supernet.batch_size: the run used 16, now 8)", True),
    ("resume with a longer linear schedule", lambda t, r: ["train-supernet", "--run-dir", r, "--resume", "steps=9"],
     "(supernet.steps: the run used 2, now 9)", True),
    ("resume changing a later stage's setting", lambda t, r: ["train-supernet", "--run-dir", r, "--resume",
                                                               "search.population=3"],
     "train-supernet --resume may not change search.population: it is set by the search stage", True),
    ("a key with and without its section", lambda t, r: ["search", "--run-dir", r, "population=3",
                                                         "search.population=4"],
     "population is given twice, as 'population' and as 'search.population'; give it once", True),
    ("search --resume with another constraint", lambda t, r: ["search", "--run-dir", r, "--resume",
                                                              "constraints=[flops<=2M]"],
     "the saved search used other settings (constraints: the search used none, now flops <= 2M)", True),
    ("search --resume with another seed", lambda t, r: ["search", "--run-dir", r, "--resume", "generations=3", "seed=3"],
     "seed: the search used 0, now 3); resume with the saved ones", True),
]


@pytest.mark.parametrize("argv, message, on_run", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line_and_changes_nothing(trained, tmp_path, capsys, argv, message, on_run):
    refused_in_one_line(trained, tmp_path, capsys, argv, message)


def refused_in_one_line(prepared, tmp_path, capsys, argv, message):
    """Run ``argv(tmp, run)`` on a copy of the ``prepared`` run: exit 2, one stderr line holding
    ``message``, no traceback, and the run byte-identical afterwards."""
    root, prepared_run = prepared
    shutil.copy(root / "tiny.yaml", tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    shutil.copytree(prepared_run, run)
    args = [str(a) for a in argv(tmp_path, run)]  # may set the scene first
    before = snapshot(run)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert snapshot(run) == before  # nothing overwritten


def test_nan_loss_keeps_the_last_good_checkpoint(trained, tmp_path, capsys):
    root, _ = trained
    run = tmp_path / "nan"
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(run), "optim.lr=1e30",
                 "steps=8", "checkpoint_every=2"]) == 2
    err = capsys.readouterr().err
    step = int(err.split("at step ")[1].split(";")[0])
    assert load_checkpoint(run / "supernet" / "last.pt")["step"] <= step


def test_skip_corrupt_images_skips_and_counts(trained, tmp_path, capsys):
    root, _ = trained
    args = _corrupt_image(tmp_path)
    assert main(["train-supernet", "--config", str(root / "tiny.yaml"), "--run-dir", str(tmp_path / "r"), *args,
                 "data.skip_corrupt=true", "steps=2", "batch_size=4"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image" in err and "broken.jpg" in err
