"Interpretation chapter: confusion matrix, per-class scores against scikit-learn, heatmaps, the report and its CLI."
import json, subprocess
from pathlib import Path

import numpy as np, pandas as pd, pytest, torch
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support, f1_score, confusion_matrix as sk_confusion_matrix

from recyclenet.data import CLASSES, get_trashnet
from recyclenet.train import train
from recyclenet.interpret import RecycleInterpretation, interpret_file, write_report, heatmaps, gradcam, attention_maps, split_dl, REPORT_FILES
from recyclenet.models import spatial_gate


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "A tiny attention model (EfficientNet-Lite0 + RecycleNet attention) and a tiny ResNet18 without attention, from scratch."
    d = tmp_path_factory.mktemp('runs')
    att = train(data='sample', arch='efficientnet_lite0', attention='ours', recipe='one-cycle', aug='mid', epochs=6, lr=1e-2, size=64, bs=8, out=d/'ours', export_pkl=False)
    plain = train(data='sample', arch='resnet18', attention=None, recipe='one-cycle', aug='mid', epochs=4, lr=3e-3, size=32, bs=16, pretrained=False, out=d/'plain', export_pkl=False)
    return d, att, plain


@pytest.fixture(scope='module')
def interp(runs):
    return RecycleInterpretation.from_learner(runs[1], 'test')


@pytest.mark.parametrize('split,n', [('train', 48), ('valid', 12), ('test', 12)])
def test_confusion_matrix_counts_every_photo_of_the_split(runs, split, n):
    i = RecycleInterpretation.from_learner(runs[1], split)
    cm = i.confusion_matrix()
    assert cm.shape == (6, 6) and cm.sum() == n and len(i.targs) == n
    assert (cm.sum(1) == n//6).all()                                # the sample has as many photos of every class
    np.testing.assert_array_equal(cm, sk_confusion_matrix(i.targs.numpy(), i.preds.argmax(1).numpy(), labels=range(6)))


def test_per_class_scores_agree_with_sklearn(interp):
    t, d = interp.targs.numpy(), interp.preds.argmax(1).numpy()
    pc = interp.per_class()
    assert list(pc.index) == CLASSES and list(pc.columns) == ['precision', 'recall', 'f1', 'support']
    for col, ref in zip(pc.columns, precision_recall_fscore_support(t, d, labels=range(6), zero_division=0)):
        np.testing.assert_allclose(pc[col].values, ref)
    assert interp.macro_f1() == pytest.approx(f1_score(t, d, labels=range(6), average='macro', zero_division=0))
    acc = interp.accuracy()
    assert (acc['correct'], acc['total']) == (int((t == d).sum()), 12)
    assert interp.summary() == f"test accuracy: {acc['correct']}/12 = {100*acc['correct']/12:.2f}%, macro-F1 {interp.macro_f1():.3f}"


def test_the_small_model_learned_something(runs):
    "Otherwise the other tests would only exercise a constant classifier."
    i = RecycleInterpretation.from_learner(runs[1], 'train')
    assert i.accuracy()['accuracy'] > 0.4 and (i.confusion_matrix().sum(0) > 0).sum() >= 3


def test_most_confused_photos_are_the_mistakes_in_pair_order(interp):
    pairs, idxs = interp.most_confused(), interp.confused_idxs()
    wrong = set(torch.where(interp.preds.argmax(1) != interp.targs)[0].tolist())
    assert set(idxs) == wrong and len(idxs) == len(wrong)
    t = interp.table(idxs)
    counts = {(a, p): n for a, p, n in pairs}
    assert [counts[k] for k in zip(t.truth, t.prediction)] == sorted((counts[k] for k in zip(t.truth, t.prediction)), reverse=True)
    assert (t.file.str.split('/').str[0] == t.truth).all()          # TrashNet files live in their class's folder


def test_least_sure_has_the_smallest_margins(interp):
    p = interp.preds.sort(1, descending=True).values
    margin = (p[:, 0] - p[:, 1]).numpy()
    idx = interp.least_sure(3)
    assert np.allclose(np.sort(margin[idx]), np.sort(margin)[:3])


def test_heatmaps_have_the_photos_shape(runs):
    _, att, plain = runs
    for learn, method, size in ((att, 'spatial attention', 64), (plain, 'Grad-CAM', 32)):
        xb, _ = learn.dls.valid.one_batch()
        maps, m = heatmaps(learn.model, xb)
        assert m == method and maps.shape == (len(xb), size, size) == (xb.shape[0], *xb.shape[-2:])
        assert maps.min() >= 0 and maps.max() <= 1 and np.isfinite(maps).all()
    xb, _ = plain.dls.valid.one_batch()
    assert spatial_gate(plain.model) is None
    with pytest.raises(ValueError, match='has no spatial attention'): heatmaps(plain.model, xb, 'attention')
    with pytest.raises(ValueError, match="heatmap='cam'"): heatmaps(plain.model, xb, 'cam')


def test_attention_maps_are_the_callbacks(runs):
    att = runs[1]
    att.validate()
    cb = att.attention
    torch.testing.assert_close(attention_maps(att.model, cb.images), cb.spatial[:, 0])


def test_gradcam_is_the_class_activation_map_for_a_linear_head(runs):
    "With global average pooling and one linear layer after the features, Grad-CAM = relu(W_c · A) / (h·w)."
    m = runs[2].model.eval()
    xb, _ = runs[2].dls.valid.one_batch()
    with torch.no_grad(): A = m.body(xb)
    target = torch.arange(len(xb)) % 6
    cam = torch.relu(torch.einsum('nk,nkhw->nhw', m.head[-1].weight[target], A))/(A.shape[2]*A.shape[3])
    torch.testing.assert_close(gradcam(m, xb, target), cam.cpu(), rtol=1e-4, atol=1e-6)


def test_grids_show_one_tile_per_photo(interp):
    import matplotlib.pyplot as plt
    fig = interp.plot_images(interp.least_sure(5), 'least sure')
    assert len([ax for ax in fig.axes if ax.images]) == 5 and all(len(ax.images) == 2 for ax in fig.axes if ax.images)
    plt.close(fig)
    fig = interp.plot_images([], 'nothing')                         # a perfect model has no confused photos
    assert not any(ax.images for ax in fig.axes)
    plt.close(fig)


def test_interpret_file_matches_the_learner(runs, interp):
    d = runs[0]
    fi = interpret_file(d/'ours'/'model.pth', 'sample', 'test')
    np.testing.assert_array_equal(fi.confusion_matrix(), interp.confusion_matrix())
    with pytest.raises(ValueError, match="split='dev'"): interpret_file(d/'ours'/'model.pth', 'sample', 'dev')


def test_model_for_other_classes_is_a_clear_error(runs, tmp_path):
    ck = torch.load(runs[0]/'ours'/'model.pth', weights_only=True)
    ck['config']['classes'] = ['bottle', 'can', 'box', 'bag', 'tin', 'other']
    torch.save(ck, tmp_path/'other.pth')
    for data in ('sample', get_trashnet('sample')):                   # the bundled sample, or any folder: class folders are looked for
        with pytest.raises(ValueError, match=r'was trained for the classes bottle, can, box, bag, tin, other; .* has no class folder\(s\) bottle, can'):
            interpret_file(tmp_path/'other.pth', data)
    with pytest.raises(ValueError, match='was trained for the classes bottle'):
        write_report(tmp_path/'other.pth', 'sample', 'test', out=tmp_path/'rep')
    assert not (tmp_path/'rep').exists()


def test_report_writes_images_csv_and_markdown(runs, tmp_path):
    interp = write_report(runs[0]/'ours'/'model.pth', 'sample', 'test', out=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_FILES)
    for png in ('confusion_matrix.png', 'most_confused.png'):
        with Image.open(tmp_path/png) as im:
            assert im.format == 'PNG' and min(im.size) > 300
            im.load()
    pc = pd.read_csv(tmp_path/'per_class.csv', index_col='class')
    assert list(pc.index) == CLASSES and pc.support.sum() == 12
    np.testing.assert_allclose(pc.values, interp.per_class().values)
    md = (tmp_path/'report.md').read_text()
    assert interp.summary() in md and '](confusion_matrix.png)' in md
    meta = json.loads((tmp_path/'report.json').read_text())
    assert meta['complete'] and meta['run']['split'] == 'test' and meta['correct'] == interp.accuracy()['correct']


def test_report_never_overwrites_another_runs_without_force(runs, tmp_path):
    d = runs[0]
    write_report(d/'ours'/'model.pth', 'sample', 'test', out=tmp_path)
    write_report(d/'ours'/'model.pth', 'sample', 'test', out=tmp_path)       # the same run: replaced
    before = (tmp_path/'report.md').read_text()
    with pytest.raises(ValueError, match='already holds another report: model_sha256'):
        write_report(d/'plain'/'model.pth', 'sample', 'test', out=tmp_path)
    with pytest.raises(ValueError, match="split 'test' \\(this run: 'valid'\\)"):
        write_report(d/'ours'/'model.pth', 'sample', 'valid', out=tmp_path)
    assert (tmp_path/'report.md').read_text() == before
    write_report(d/'plain'/'model.pth', 'sample', 'valid', out=tmp_path, force=True)
    assert 'resnet18' in (tmp_path/'report.md').read_text()
    (tmp_path/'report.json').unlink()                                     # files of unknown origin are kept too
    with pytest.raises(ValueError, match='of unknown origin'): write_report(d/'plain'/'model.pth', 'sample', 'valid', out=tmp_path)
    with pytest.raises(FileNotFoundError, match='does not exist'): write_report(d/'missing.pth', 'sample', out=tmp_path/'new')
    assert not (tmp_path/'new').exists()


def cli(*args):
    return subprocess.run(['recyclenet', *args], capture_output=True, text=True)


def check_report(folder, model, split, stdout=None):
    "The report in `folder` is `model`'s on `split` of the sample: every file readable, and its numbers agree with each other and with a recount."
    assert sorted(p.name for p in folder.iterdir()) == sorted(REPORT_FILES)
    n = {'train': 48, 'valid': 12, 'test': 12}[split]
    pc = pd.read_csv(folder/'per_class.csv')
    assert list(pc.columns) == ['class', 'precision', 'recall', 'f1', 'support'] and list(pc['class']) == CLASSES
    assert (pc.support == n//6).all() and pc[['precision', 'recall', 'f1']].stack().between(0, 1).all()
    meta = json.loads((folder/'report.json').read_text())
    assert meta['complete'] and meta['run']['split'] == split and meta['model'] == str(model) and meta['total'] == n
    assert meta['correct'] == round((pc.recall*pc.support).sum())                     # the diagonal of the confusion matrix
    assert meta['accuracy'] == pytest.approx(meta['correct']/n) and meta['macro_f1'] == pytest.approx(pc.f1.mean())
    assert sum(k for *_, k in meta['most_confused']) == n - meta['correct']           # every mistake in one confused pair
    recount = interpret_file(model, 'sample', split)                                  # the model again, on the same photos
    cm = recount.confusion_matrix()
    assert cm.sum() == n and np.trace(cm) == meta['correct']
    np.testing.assert_allclose(pc[['precision', 'recall', 'f1', 'support']].values, recount.per_class().values)
    assert recount.summary() in (folder/'report.md').read_text()
    if stdout is not None: assert stdout.splitlines()[0] == recount.summary()
    for png in ('confusion_matrix.png', 'most_confused.png'):
        with Image.open(folder/png) as im:
            assert im.format == 'PNG' and 300 < min(im.size) and max(im.size) < 4000, (png, im.size)
            a = np.asarray(im.convert('L'))
        assert a.std() > 10, f'{png} is (almost) blank'


def test_cli_report(runs, tmp_path):
    model = runs[0]/'plain'/'model.pth'
    r = cli('report', str(model), '--data', 'sample', '--split', 'valid', '--out', str(tmp_path/'rep'))
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith('valid accuracy: ') and 'macro-F1' in r.stdout
    check_report(tmp_path/'rep', model, 'valid', r.stdout)
    r = cli('report', str(model), '--data', 'sample', '--split', 'test', '--out', str(tmp_path/'rep'))
    assert r.returncode == 2 and r.stderr.startswith('recyclenet report: error: ') and 'Traceback' not in r.stderr
    assert '--force' in r.stderr
    check_report(tmp_path/'rep', model, 'valid')                                       # refused: the valid report is intact
    before = {f: (tmp_path/'rep'/f).stat().st_mtime_ns for f in REPORT_FILES}
    r = cli('report', str(model), '--data', 'sample', '--split', 'test', '--out', str(tmp_path/'rep'), '--force')
    assert r.returncode == 0 and r.stdout.startswith('test accuracy: '), r.stderr[-2000:]
    check_report(tmp_path/'rep', model, 'test', r.stdout)
    assert all((tmp_path/'rep'/f).stat().st_mtime_ns > t for f, t in before.items())   # every file rewritten, none stale
