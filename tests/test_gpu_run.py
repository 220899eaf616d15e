"The GPU benchmark script (nbs/benchmarks/gpu_run.py): its smoke mode runs the device path on the sample, on a CPU."
import importlib.util, subprocess, sys
from pathlib import Path

import pandas as pd, pytest, torch

SCRIPT = Path(__file__).resolve().parents[1]/'nbs'/'benchmarks'/'gpu_run.py'
spec = importlib.util.spec_from_file_location('gpu_run', SCRIPT)
gpu_run = importlib.util.module_from_spec(spec); spec.loader.exec_module(gpu_run)

@pytest.fixture(scope='module')
def pack(tmp_path_factory):
    from recyclenet.data import sample_path
    return gpu_run.pack(sample_path(), tmp_path_factory.mktemp('pack'), archs=('efficientnet_lite0',), wheels=False)

@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp('smoke')
    r = subprocess.run([sys.executable, str(SCRIPT), 'smoke', '--out', str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return out

def test_pack_keeps_split_and_halves_weights(pack):
    df = pd.read_csv(pack/'photos.csv')
    assert df.split.value_counts().to_dict() == {'train': 48, 'valid': 12, 'test': 12}
    assert all((pack/f).exists() for f in df.file)
    sd = torch.load(pack/'weights'/'efficientnet_lite0.pth', weights_only=True)
    assert {v.dtype for v in sd.values() if v.is_floating_point()} == {torch.float16}

def test_gpu_dls_batches(pack):
    dls = gpu_run.gpu_dls(pack, size=48, bs=8)
    assert (len(dls.train_ds), len(dls.valid_ds), len(dls[2].dataset)) == (48, 12, 12)
    x, y = dls.train.one_batch()
    assert x.shape == (8, 3, 48, 48) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    xs, ys = zip(*dls[2].new(shuffle=False))                      # every test photo once, in order, resized
    df = pd.read_csv(pack/'photos.csv').query('split == "test"')
    assert torch.cat(ys).tolist() == [dls.vocab.index(l) for l in df.label]
    assert {tuple(b.shape[1:]) for b in xs} == {(3, 48, 48)}

def test_choose_prefers_valid_then_fewer_epochs_then_lower_lr():
    c = pd.DataFrame(dict(arch=['a', 'a', 'a', 'b', 'b'], epochs=[40, 10, 10, 20, 40], lr=[1e-3, 3e-3, 1e-3, 1e-3, 1e-3],
                          valid_acc=[90., 90., 90., 80., 85.], name=list('vwxyz')))
    assert sorted(gpu_run.choose(c).name) == ['x', 'z']

def test_planned_epochs_fit_the_budget():
    assert gpu_run.planned_epochs(1.0, 45 + gpu_run.SHARED_SLOWDOWN*40) == 40
    assert gpu_run.planned_epochs(0.01, 1000) == gpu_run.SCRATCH_EPOCHS
    assert gpu_run.planned_epochs(1.0, 10) == 1

def test_smoke_tables(smoke):
    ft = pd.read_csv(smoke/'gpu_finetune.csv')
    chosen = ft[ft.chosen_by == 'valid']
    assert len(chosen) == 1 and chosen.valid_acc.iloc[0] == ft.valid_acc.max()
    assert chosen.test.iloc[0].endswith('/12') and ft[ft.chosen_by != 'valid'].test.isna().all()   # test scored once
    ab = pd.read_csv(smoke/'gpu_ablation.csv')
    assert sorted(ab.variant) == sorted(['none', 'se', 'cbam', 'ours-cs-sum', 'ours-c-sum', 'ours-s-sum', 'ours-cs-mul',
                                         'ours-cs-max'])
    assert ab.test.str.endswith('/12').all() and ab.valid.str.endswith('/12').all()
    curves = pd.read_csv(smoke/'gpu_curves.csv').groupby('name').size()
    for _, r in ft.iterrows(): assert curves[r['name']] == r['freeze_epochs'] + r['epochs']   # no epochs of get_preds
    for _, r in ab.iterrows(): assert curves[r['name']] == r['epochs']
    t = pd.read_csv(smoke/'gpu_timing.csv')
    assert len(t) == 2 and (t.epoch_s > 0).all()

def test_smoke_report(smoke):
    assert (smoke/'gpu_curves.png').stat().st_size > 10_000
    s = (smoke/'gpu_ablation_summary.md').read_text()
    assert 'ours-cs-sum' in s and '93.04' in s                    # beside the paper's Acc@1

def test_retrain_the_chosen_candidates(pack, tmp_path, monkeypatch):
    cand = pd.DataFrame(dict(name=['lite0-a', 'lite0-b'], arch='efficientnet_lite0', epochs=[1, 2], lr=2e-3,
                             valid_acc=[50., 40.]))
    cand.to_csv(tmp_path/'cand.csv', index=False)
    monkeypatch.setattr(gpu_run, 'ablation_specs', lambda **kw: [])   # (the ablation is the smoke test's)
    out = gpu_run.run(pack, tmp_path/'out', budget=600, workers=2, smoke=True, candidates=tmp_path/'cand.csv')
    ft = pd.read_csv(out/'gpu_finetune.csv')
    assert ft.set_index('name').chosen_by.to_dict() == {'lite0-a': 'valid', 'lite0-b': 'candidate',
                                                       'lite0-a-final': 'valid (the chosen candidate, retrained)'}
    final = ft.set_index('name').loc['lite0-a-final']
    assert final.epochs == 1 and final.test.endswith('/12')
