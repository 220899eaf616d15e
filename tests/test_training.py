"Training chapter: a real (tiny) training run on the sample, checkpoints, resume, model files, and the CLI."
import json, subprocess, sys
from pathlib import Path

import pytest, torch

from recyclenet.augment import trashnet_dls, AlbumentationsTransform

from recyclenet.data import official_split, CLASSES
from recyclenet.inference import Classifier, load_classifier
from recyclenet.augment import BackgroundSwap
from recyclenet.train import train
from recyclenet.learner import recyclenet_learner, evaluate_file, recyclenet_splitter, AttentionCallback
from recyclenet.recipes import fit_recyclenet
from recyclenet.models import load_model_file, save_model_file


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp('run')
    learn = train(data='sample', arch='efficientnet_lite0', attention='ours', recipe='one-cycle', aug='mid', epochs=6, lr=1e-2, size=64, bs=8, out=out)
    return out, learn


def test_train_writes_everything(trained, sample):
    "results.json's scores are the saved model's: recounted here photo by photo, through the inference path, against the folder names."
    out, learn = trained
    assert {p.name for p in out.iterdir()} == {'checkpoints', 'model.md', 'model.pth', 'results.csv', 'results.json', 'results.png'}
    res = json.loads((out/'results.json').read_text())
    split = official_split(sample, verbose=False)
    clf = load_classifier(out/'model.pth', device='cpu')
    clf = Classifier(clf.config, model=clf.model, draft=False)        # (full decoding, as the training loaders decode)
    for i, name in ((1, 'valid'), (2, 'test')):
        files = list(split.file[split.split == name])
        assert sorted(learn.dls[i].items.file) == sorted(files)       # the learner scored that split's photos
        preds = clf.predict_batch(files, progress=False)
        assert (preds.error == '').all() and len(files) == 12
        correct = int((preds.label.values == [Path(f).parent.name for f in files]).sum())
        assert res[name] == dict(correct=correct, total=12, accuracy=correct/12), (name, res[name], correct)
    assert res['config']['arch'] == 'efficientnet_lite0' and res['config']['classes'] == CLASSES
    assert len(learn.history) == 7                                  # 1 frozen + 6 unfrozen epochs


def test_training_learns_something(trained):
    "On 48 training photos of 6 classes, fine-tuning must beat chance (1/6) on its own training images."
    out, _ = trained
    r = evaluate_file(out/'model.pth', 'sample', 'train')
    assert r['total'] == 48 and r['accuracy'] > 0.4, r


def test_eval_matches_training_report(trained):
    out, _ = trained
    res = json.loads((out/'results.json').read_text())
    assert evaluate_file(out/'model.pth', 'sample', 'test')['correct'] == res['test']['correct']


def test_model_file_for_other_classes_is_a_clear_error(trained, tmp_path):
    out, learn = trained
    save_model_file(learn.model, tmp_path/'other.pth', **dict(learn.config, classes=['a', 'b', 'c', 'd', 'e', 'f']))
    with pytest.raises(ValueError, match=r"other.pth: the model was trained for classes \['a', 'b'.*no class folder"):
        evaluate_file(tmp_path/'other.pth', 'sample')


def test_truncated_and_unsafe_model_files(trained, tmp_path):
    out, _ = trained
    (tmp_path/'cut.pth').write_bytes((out/'model.pth').read_bytes()[:5000])
    with pytest.raises(ValueError, match='unreadable or truncated'): load_model_file(tmp_path/'cut.pth')
    torch.save({'config': {}, 'model': {}, 'evil': print}, tmp_path/'evil.pth')
    with pytest.raises(ValueError, match='refused'): load_model_file(tmp_path/'evil.pth')
    with pytest.raises(FileNotFoundError): load_model_file(tmp_path/'missing.pth')


def test_attention_callback_records_maps(trained):
    _, learn = trained
    cb = learn.attention
    assert isinstance(cb, AttentionCallback)
    learn.validate()
    assert cb.spatial.shape[1:] == (1, 2, 2) and cb.channel.shape[1] == 1280
    assert 0 < cb.spatial.min() and cb.spatial.max() < 1
    assert {'spatial_mean', 'spatial_spread', 'channel_mean', 'channel_spread'} <= set(cb.stats().columns)


@pytest.mark.parametrize('bad,match', [(dict(epochs=-1), 'cannot be negative'), (dict(lr=-1e-3), 'not a usable learning rate'),
                                       (dict(lr=1e6), 'not a usable learning rate'), (dict(recipe='adam'), "recipe='adam'"),
                                       (dict(keep='first'), "use 'last'")])
def test_bad_training_arguments(tmp_path, bad, match):
    dls = trashnet_dls('data/trashnet-sample/dataset-resized', size=32, bs=16)
    learn = recyclenet_learner(dls, 'resnet18', pretrained=False, path=tmp_path)
    with pytest.raises(ValueError, match=match): fit_recyclenet(learn, **{'epochs': 1, 'lr': 1e-3, **bad})


def test_zero_epochs_trains_nothing_but_still_saves(tmp_path):
    learn = train(data='sample', arch='resnet18', attention=None, recipe='one-cycle', aug='mid', epochs=0, freeze_epochs=0, lr=1e-3, size=32, bs=16, pretrained=False,
                  out=tmp_path, export_pkl=False)
    assert (tmp_path/'model.pth').exists() and len(learn.history) == 0


def test_paper_recipe_uses_sgd_with_step_decay(tmp_path):
    learn = train(data='sample', arch='resnet18', attention=None, aug='mid', epochs=2, size=32, bs=16, pretrained=False, recipe='paper', out=tmp_path, export_pkl=False)
    h = learn.opt.hypers[0]
    assert learn.config['lr'] == 2e-4 and h['mom'] == 0.9 and h['wd'] == 1e-4


def cli(*args):
    return subprocess.run(['recyclenet', *args], capture_output=True, text=True)


def test_cli_train_resume_and_eval(tmp_path):
    r = cli('train', '--data', 'sample', '--arch', 'resnet18', '--scratch', '--epochs', '2', '--lr', '3e-3', '--size', '32',
            '--bs', '16', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'test accuracy: ' in r.stdout and '/12 = ' in r.stdout
    assert json.loads((tmp_path/'results.json').read_text())['config']['recipe'] == 'one-cycle'   # (cached needs pretrained weights)
    r = cli('train', '--data', 'sample', '--arch', 'resnet18', '--scratch', '--epochs', '3', '--lr', '3e-3', '--size', '32',
            '--bs', '16', '--out', str(tmp_path), '--resume')
    assert r.returncode == 0 and 'resuming after scratch epoch 1' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    r = cli('eval', str(tmp_path/'model.pth'), '--data', 'sample', '--split', 'valid')
    assert r.returncode == 0 and r.stdout.strip().startswith('valid accuracy: ') and r.stdout.strip().endswith('%')


def test_cli_train_defaults_to_the_robust_recipe(tmp_path):
    "With no recipe flags `recyclenet train` trains the robustness chapter's pick: cached maps, webcam augmentations, CutMix."
    r = cli('train', '--data', 'sample', '--epochs', '1', '--views', '2', '--size', '64', '--out', str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    c = json.loads((tmp_path/'results.json').read_text())['config']
    assert (c['recipe'], c['aug'], c['mix'], c['attention'], c['lr'], c['keep']) == ('cached', 'webcam', 'cutmix', 'ours', 2e-3, 'last'), c
    last = torch.load(tmp_path/'checkpoints'/'last.pth', weights_only=True)['model']
    kept = torch.load(tmp_path/'model.pth', map_location='cpu', weights_only=False)['model']
    assert all(torch.equal(v, last[k]) for k, v in kept.items())           # model.pth holds the final epoch's weights


def test_cli_bn_gate_is_saved_and_checked_on_resume(tmp_path):
    "`--gate bn` trains the normalised spatial gate, model.pth rebuilds it, and resuming with the paper's gate is refused."
    args = ('--data', 'sample', '--arch', 'resnet18', '--scratch', '--attention', 'ours', '--epochs', '1', '--size', '32',
            '--bs', '16', '--out', str(tmp_path))
    r = cli('train', *args, '--gate', 'bn')
    assert r.returncode == 0, r.stderr[-2000:]
    m = load_model_file(tmp_path/'model.pth', 'cpu')
    assert m.config['gate'] == 'bn' and isinstance(m.attention.spatial.conv[1], torch.nn.BatchNorm2d)
    assert m.attention.spatial.conv[0].padding_mode == 'replicate'
    r = cli('train', *args, '--epochs', '2', '--resume')                # (the default gate: conv)
    assert r.returncode != 0 and "saved for gate='bn', but this model has gate='conv'" in r.stderr, r.stderr[-2000:]


def test_cli_anchor_pulls_toward_imagenet_after_resume(tmp_path):
    "`--anchor` (L2-SP) saves the ImageNet weights it pulls toward; `--resume` keeps pulling toward them, not the resumed ones."
    from recyclenet.models import recyclenet_model
    from recyclenet.recipes import body_stages, trunk_depth
    args = ('--data', 'sample', '--views', '1', '--size', '64', '--mix', 'none', '--anchor', '0.1', '--out', str(tmp_path))
    r = cli('train', *args, '--epochs', '1')
    assert r.returncode == 0, r.stderr[-2000:]
    m = recyclenet_model('efficientnet_lite0', 'ours')
    imagenet = [p.detach() for s in body_stages(m)[trunk_depth(m):] for p in s.parameters()]
    anchor = tmp_path/'checkpoints'/'anchor.pth'
    same = lambda: len(torch.load(anchor, weights_only=True)) == len(imagenet) and all(
        torch.equal(a, b) for a, b in zip(torch.load(anchor, weights_only=True), imagenet))
    assert same()
    trained = load_model_file(tmp_path/'model.pth', 'cpu').body.blocks[6][0].conv_pw.weight
    assert not torch.equal(trained, m.body.blocks[6][0].conv_pw.weight)   # it trained, so resuming has other weights
    r = cli('train', *args, '--epochs', '2', '--resume')
    assert r.returncode == 0 and 'resuming after cached epoch 0' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert same() and json.loads((tmp_path/'results.json').read_text())['config']['anchor'] == 0.1
    anchor.unlink()
    r = cli('train', *args, '--epochs', '3', '--resume')
    assert r.returncode != 0 and 'anchor.pth is missing' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]


def test_webcam_clutter_is_training_photos_only(tmp_path):
    "The objects strewn behind a photo come from the training split: never a photo the model is validated or tested on."
    learn = train(data='sample', recipe='one-cycle', epochs=0, freeze_epochs=0, size=32, bs=16, aug='webcam', pretrained=False, out=tmp_path, export_pkl=False)
    tfm = next(t for t in learn.dls.train.after_item.fs if isinstance(t, AlbumentationsTransform))
    swap = next(t for t in tfm.aug.transforms if isinstance(t, BackgroundSwap))
    df = learn.dls.split_df
    assert len(swap.clutter) and set(map(str, swap.clutter)) == set(map(str, df.file[df.split == 'train']))


def test_cli_errors_are_one_line(tmp_path):
    r = cli('train', '--data', 'sample', '--arch', 'vgg99', '--out', str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("recyclenet train: error: arch='vgg99'")
    r = cli('eval', str(tmp_path/'nothing.pth'))
    assert r.returncode == 2 and 'does not exist' in r.stderr and 'Traceback' not in r.stderr
    r = cli('train', '--data', 'sample', '--resume', '--out', str(tmp_path/'fresh'))
    assert r.returncode == 2 and 'No checkpoint to resume from' in r.stderr
