"""Interrupted, reproducible and multi-process training: real `recyclenet train` processes on the bundled sample, on CPU."""
import importlib.util, json, os, signal, socket, subprocess, sys, time
from pathlib import Path

import pandas as pd, pytest, torch

from recyclenet.train import train

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), os.environ.get('PYTHONPATH')] if p))
CLI = [sys.executable, '-m', 'recyclenet.cli']                     # this checkout's CLI, whatever is installed
VALID_COLS = ['stage', 'epoch', 'valid_loss', 'accuracy', 'error_rate']   # (fastai's smoothed train_loss restarts on resume)


def run(*args, timeout=900) -> subprocess.CompletedProcess:
    r = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r

def results(out) -> dict: return json.loads((Path(out)/'results.json').read_text())
def history(out) -> pd.DataFrame: return pd.read_csv(Path(out)/'checkpoints'/'history.csv')
def weights(out) -> dict: return torch.load(Path(out)/'model.pth', weights_only=True)['model']


def test_module_entry_point_dispatches():
    "`python -m recyclenet.cli` is the console script (what torchrun and `accelerate launch -m` run)."
    r = subprocess.run([*CLI, '--help'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and 'commands:' in r.stdout and 'train ' in r.stdout, r.stderr[-2000:]


# --- killed, then resumed ---

ARGS = ['train', '--data', 'sample', '--arch', 'resnet18', '--scratch', '--lr', '3e-3', '--size', '48', '--bs', '16',
        '--epochs', '6', '--split', 'random', '--seed', '7']

def test_killed_run_resumes_to_the_same_result(tmp_path):
    "SIGKILL after the first checkpoint; `--resume` ends with the metrics, weights and test score of a run never stopped."
    out = tmp_path/'killed'
    with open(tmp_path/'killed.log', 'w') as log:
        p = subprocess.Popen([*CLI, *ARGS, '--out', str(out)], env=ENV, stdout=log, stderr=subprocess.STDOUT)
        last, t0 = out/'checkpoints'/'last.pth', time.time()
        while not last.exists() and p.poll() is None and time.time() - t0 < 600: time.sleep(0.02)
        time.sleep(0.3)                                                 # into the next epoch
        p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, (tmp_path/'killed.log').read_text()[-3000:]
    stopped = torch.load(last, weights_only=True)['epoch']
    assert stopped < 5 and not (out/'model.pth').exists(), f'the run was not stopped mid-training (epoch {stopped})'

    resumed = run(*ARGS, '--out', out, '--resume')
    assert f'resuming after scratch epoch {stopped}' in resumed.stdout
    run(*ARGS, '--out', tmp_path/'straight')
    a, b = history(tmp_path/'straight'), history(out)
    assert len(a) == 6
    pd.testing.assert_frame_equal(a[VALID_COLS], b[VALID_COLS])          # exactly, on CPU
    for k, v in weights(tmp_path/'straight').items(): torch.testing.assert_close(weights(out)[k], v, rtol=0, atol=0)
    ra, rb = results(tmp_path/'straight'), results(out)
    assert (ra['valid'], ra['test']) == (rb['valid'], rb['test'])
    assert ra['config']['seed'] == rb['config']['seed'] == 7               # the seed is recorded with the model
    assert torch.load(out/'model.pth', weights_only=True)['config']['seed'] == 7


# --- several processes ---

def test_only_rank_0_writes(tmp_path, monkeypatch):
    "A process other than rank 0 trains but writes nothing: no checkpoints, model file or report."
    monkeypatch.setenv('RANK', '1')
    learn = train(data='sample', arch='resnet18', attention=None, recipe='one-cycle', aug='mid', epochs=1, freeze_epochs=0, lr=3e-3, size=32, bs=16, pretrained=False,
                  out=tmp_path/'rank1')
    assert learn.results['test']['total'] == 12 and not (tmp_path/'rank1').exists()


DIST_ARGS = ['train', '--data', 'sample', '--arch', 'efficientnet_lite0', '--size', '96', '--freeze_epochs', '3',
             '--epochs', '1', '--lr', '1e-2', '--seed', '3', '--recipe', 'one-cycle',     # (the default without --distributed is cached)
             '--attention', 'none', '--aug', 'mid', '--mix', 'none', '--label_smoothing', '0']

@pytest.mark.skipif(importlib.util.find_spec('accelerate') is None, reason='distributed training needs accelerate')
def test_two_processes_train_like_one(tmp_path):
    "torchrun, 2 CPU processes (gloo) with batches of 8, against 1 process with batches of 16: same steps, similar results."
    one, two = tmp_path/'one', tmp_path/'two'
    run(*DIST_ARGS, '--bs', '16', '--out', one)
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                        *CLI[1:], *DIST_ARGS, '--bs', '8', '--distributed', '--out', str(two)],
                       capture_output=True, text=True, env=ENV, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert 'data-parallel training in 2 processes (gloo), batches of 8 each' in r.stdout
    assert r.stdout.count('test accuracy: ') == 1                          # only rank 0 reports...
    assert sorted(p.name for p in two.iterdir()) == ['checkpoints', 'model.md', 'model.pth', 'results.csv', 'results.json',
                                                     'results.png']   # ...and writes (reports: one process)
    assert sorted(p.name for p in (two/'checkpoints').iterdir()) == ['best.pth', 'history.csv', 'last.pth']
    assert results(two)['config']['processes'] == 2 and results(one)['config']['processes'] == 1
    ck = torch.load(two/'checkpoints'/'last.pth', weights_only=True)
    assert not any(k.startswith('module.') for k in ck['model'])            # saved unwrapped: loads anywhere
    h1, h2 = history(one), history(two)
    assert len(h1) == len(h2) == 4
    assert (h1.valid_loss - h2.valid_loss).abs().max() < 0.25, (h1, h2)    # the same training, within tolerance
    correct = lambda out: results(out)['valid']['correct'] + results(out)['test']['correct']
    assert abs(correct(two) - correct(one)) <= 4, (results(one), results(two))          # of 24 photos
    ev = run('eval', two/'model.pth', '--data', 'sample', '--split', 'train')           # it learned: chance is 1/6
    assert float(ev.stdout.strip().splitlines()[-1].split('= ')[1].rstrip('%')) >= 60, ev.stdout[-300:]


LOGGED_TRAIN = r"""# `recyclenet ARGS`, each torch.save logged to $SAVES_LOG as 'RANK FILE'
import os, sys, torch
_save = torch.save
def save(obj, f, *args, **kwargs):
    with open(os.environ['SAVES_LOG'], 'a') as log: log.write(f"{os.environ.get('RANK')} {f}\n")
    return _save(obj, f, *args, **kwargs)
torch.save = save
from recyclenet.cli import main
sys.exit(main(sys.argv[1:]))
"""

def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def test_accelerate_launch_trains_in_two_processes(tmp_path):
    """`accelerate launch`, 2 CPU processes (gloo): training finishes, rank 0 alone reports and writes model.pth, once.

    accelerate's `--cpu` would start one process only (several CPU processes need mpirun there): its torchrun
    launcher, `--multi_gpu`, starts them, and with no GPU visible RecycleNet joins them with gloo."""
    (tmp_path/'logged_train.py').write_text(LOGGED_TRAIN)
    out, saves = tmp_path/'out', tmp_path/'saves.log'
    env = dict(ENV, CUDA_VISIBLE_DEVICES='', HF_HOME=str(tmp_path/'hf'), SAVES_LOG=str(saves))   # (no accelerate config of the machine's)
    r = subprocess.run([sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
                        '--mixed_precision', 'no', '--dynamo_backend', 'no', '--main_process_port', str(free_port()),
                        str(tmp_path/'logged_train.py'), 'train', '--data', 'sample', '--arch', 'resnet18', '--scratch',
                        '--attention', 'none', '--size', '32', '--epochs', '1', '--freeze_epochs', '0', '--lr', '3e-3', '--bs', '8',
                        '--recipe', 'one-cycle', '--aug', 'mid', '--mix', 'none', '--distributed', '--out', str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert 'data-parallel training in 2 processes (gloo), batches of 8 each' in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'no launcher started several processes' not in r.stderr
    assert r.stdout.count('test accuracy: ') == 1 and r.stdout.count('valid accuracy: ') == 1   # rank 0 reports...
    assert sorted(p.name for p in out.iterdir()) == ['checkpoints', 'model.md', 'model.pth', 'results.csv', 'results.json',
                                                     'results.png']   # ...and writes
    written = [l.split(' ', 1) for l in saves.read_text().splitlines()]
    assert written and {rank for rank, _ in written} == {'0'}, written
    assert [Path(f).name for _, f in written].count('.model.pth.tmp') == 1, written                 # model.pth: once
    res = results(out)
    assert res['config']['processes'] == 2 and res['test']['total'] == 12
    from recyclenet.inference import load_classifier
    from recyclenet.data import CLASSES, get_trashnet, image_files
    assert load_classifier(out/'model.pth', device='cpu').predict(image_files(get_trashnet('sample'))[0])['label'] in CLASSES
