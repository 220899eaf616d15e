"Inference chapter: one photo, a folder, the CLI and onnxruntime agree; bad files are reported, bad model files are clear errors."
import io, json, re, shutil, subprocess

import numpy as np, pandas as pd, pytest, torch
from PIL import Image

from recyclenet.data import image_files, CLASSES
from recyclenet.train import train
from recyclenet.models import save_model_file, load_model_file
from recyclenet.inference import Classifier, load_classifier, predict_paths, export_onnx, read_image, calibration_photos
from recyclenet.train import fit_folder


@pytest.fixture(scope='module')
def model_file(tmp_path_factory):
    out = tmp_path_factory.mktemp('inference')
    train(data='sample', arch='efficientnet_lite0', attention='ours', recipe='one-cycle', aug='mid', epochs=2, lr=1e-2, size=64, bs=8, out=out, export_pkl=True)
    return out/'model.pth'


@pytest.fixture(scope='module')
def photos(sample):
    return image_files(sample)[::4]                                # 18 photos, every class


def cli(*args):
    r = subprocess.run(['recyclenet', *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_one_photo_in_any_form_gives_the_same_answer(model_file, photos):
    "Encoded forms (path, bytes, file) decode alike; with JPEG draft decoding off, decoded forms (PIL, array) match exactly."
    clf = load_classifier(model_file)
    fn = photos[0]
    ref = clf.predict(fn)
    assert ref['label'] in CLASSES and len(ref['topk']) == 3 and abs(sum(ref['probs'].values()) - 1) < 1e-5
    for src in (str(fn), fn.read_bytes(), io.BytesIO(fn.read_bytes())):
        assert clf.predict(src)['probs'] == ref['probs'], type(src)
    full = Classifier(clf.config, model=clf.model, draft=False)
    ref = full.predict(fn)
    for src in (Image.open(fn), np.asarray(Image.open(fn).convert('RGB'))):
        r = full.predict(src)
        assert r['label'] == ref['label'] and abs(r['confidence'] - ref['confidence']) < 1e-6, type(src)


def test_batch_cli_and_onnx_agree(model_file, photos, tmp_path):
    clf = load_classifier(model_file)
    single = [clf.predict(f)['label'] for f in photos]
    batch = predict_paths(clf, photos, bs=5)
    assert list(batch.label) == single and (batch.error == '').all()
    np.testing.assert_allclose(batch[clf.classes].sum(1), 1, atol=1e-5)

    cli('predict', *photos, '--model', model_file, '--out', tmp_path/'preds.csv')
    from_cli = pd.read_csv(tmp_path/'preds.csv', keep_default_na=False)
    assert list(from_cli.label) == single and list(from_cli.path) == [str(f) for f in photos]

    onnx_file, diff = export_onnx(model_file, tmp_path/'m.onnx', check=photos[:4], verbose=False)
    assert diff < 1e-4
    onnx_clf = load_classifier(onnx_file)
    assert onnx_clf.backend == 'onnx' and onnx_clf.classes == clf.classes
    ob = predict_paths(onnx_clf, photos)
    assert list(ob.label) == single
    np.testing.assert_allclose(ob[clf.classes].values, batch[clf.classes].values, atol=1e-4)


def test_int8_export_is_smaller_and_reports_its_difference(model_file, photos, tmp_path):
    "int8 is ~4x smaller; its accuracy is judged on full TrashNet in the inference benchmark, not on a 2-epoch sample model."
    out = cli('export', '--model', model_file, '--onnx', tmp_path/'m.int8.onnx', '--quantize', '--check', photos[0].parent)
    printed = float(out.split('max |p_onnx - p_torch| = ')[1].split()[0])
    q = load_classifier(tmp_path/'m.int8.onnx')
    xs = np.stack([q.prepare(f) for f in image_files(photos[0].parent)])
    measured = np.abs(q.probs(xs) - load_classifier(model_file, device='cpu').probs(xs)).max()
    assert abs(printed - measured) < 1e-3 * max(1, measured) + 5e-3
    assert (tmp_path/'m.int8.onnx').stat().st_size < 0.35 * model_file.stat().st_size
    np.testing.assert_allclose(q.probs(xs).sum(1), 1, atol=1e-5)


def test_int8_calibration_agrees_with_float_and_keeps_attention_and_head_float(tmp_path, sample):
    "A Lite0 with ImageNet features and a head fitted on the sample, calibrated on the sample: int8 picks the fp32 label on (almost) every photo."
    import onnx
    from webcam_model import probe_model
    # (128 px: at 96 px the final map is 3x3 and int8 flips 6 of this overfit probe's 72 labels; at 112-128 px 0-1 of 72)
    mf = probe_model(tmp_path/'probe.pth', size=128, steps=150)
    f32, _ = export_onnx(mf, tmp_path/'m.onnx', verbose=False)
    q, diff = export_onnx(mf, tmp_path/'m.int8.onnx', quantize=True, calibrate=sample, verbose=False)
    files = image_files(sample)
    xs = np.stack([load_classifier(f32).prepare(f) for f in files])
    p32, p8 = load_classifier(f32).probs(xs), load_classifier(q).probs(xs)
    assert (p32.argmax(1) == p8.argmax(1)).mean() >= 0.95 and diff < 0.1
    g = onnx.load(str(q)).graph
    weights = {i.name: i.data_type for i in g.initializer}
    kept = [n for n in g.node if n.name.startswith(('/attention/', '/head/'))]
    assert {n.op_type for n in kept} >= {'Conv', 'Sigmoid', 'Gemm'}     # float ops, not QLinearConv, QGemm...
    assert not any(n.op_type.startswith('QLinear') or n.op_type == 'QGemm' for n in kept)
    assert all(weights[i] == onnx.TensorProto.FLOAT for n in kept if n.op_type in ('Conv', 'Gemm') for i in n.input if i in weights)
    body = [n.op_type for n in g.node if n.name.startswith('/body/')]
    assert body.count('QLinearConv') >= 40 and 'Conv' not in body        # while every backbone convolution is int8
    assert json.loads(onnx.load(str(q)).metadata_props[0].value)['int8']['photos'] == 72


def test_calibration_photos_are_clear_about_bad_folders(sample, tmp_path):
    assert len(calibration_photos()) == 72 and len(calibration_photos(sample, max_photos=20)) == 18
    assert calibration_photos([sample/'glass'/'glass174.jpg']) == [str(sample/'glass'/'glass174.jpg')]
    with pytest.raises(FileNotFoundError, match='nowhere does not exist'): calibration_photos(tmp_path/'nowhere')
    (tmp_path/'empty').mkdir(); (tmp_path/'empty'/'notes.txt').write_text('no photos here')
    with pytest.raises(ValueError, match='holds no images'): calibration_photos(tmp_path/'empty')
    with pytest.raises(ValueError, match='holds no images'): export_onnx('unused.pth', tmp_path/'q.onnx', quantize=True, calibrate=tmp_path/'empty')


def test_tta_is_a_probability_and_differs_from_plain(model_file, photos):
    clf = load_classifier(model_file)
    plain, tta = clf.predict(photos[1]), clf.predict(photos[1], tta=True)
    assert abs(sum(tta['probs'].values()) - 1) < 1e-5 and tta['probs'] != plain['probs']


def test_bad_files_are_reported_not_fatal(model_file, photos, tmp_path):
    good = tmp_path/'good.jpg'; shutil.copy(photos[0], good)
    (tmp_path/'empty.jpg').write_bytes(b'')
    (tmp_path/'notes.jpg').write_text('this is not a photo')
    (tmp_path/'cut.jpg').write_bytes(photos[1].read_bytes()[:300])
    (tmp_path/'.DS_Store').write_bytes(b'junk')                      # hidden files are not photos someone asked for
    df = predict_paths(load_classifier(model_file), [tmp_path], out=tmp_path/'out'/'p.csv')
    errors = dict(zip(df.path.map(lambda p: p.split('/')[-1]), df.error))
    assert set(errors) == {'good.jpg', 'empty.jpg', 'notes.jpg', 'cut.jpg'}
    assert errors['good.jpg'] == '' and df.label[df.path.str.endswith('good.jpg')].item() in CLASSES
    assert errors['empty.jpg'] == 'zero-byte file' and errors['notes.jpg'].startswith('not an image')
    assert errors['cut.jpg'].startswith('truncated or corrupt')
    assert len(pd.read_csv(tmp_path/'out'/'p.csv')) == 4


def test_missing_photo_path_is_a_clear_error(model_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.jpg does not exist'):
        predict_paths(load_classifier(model_file), [tmp_path/'nope.jpg'])


def test_bad_model_files_are_clear_errors(model_file, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'): load_classifier(tmp_path/'missing.pth')
    (tmp_path/'cut.pth').write_bytes(model_file.read_bytes()[:4000])
    with pytest.raises(ValueError, match='unreadable or truncated'): load_classifier(tmp_path/'cut.pth')
    ck = torch.load(model_file, weights_only=True)                  # weights of Lite0 + attention, labelled as ResNet18
    torch.save(dict(ck, config=dict(ck['config'], arch='resnet18')), tmp_path/'other_arch.pth')
    with pytest.raises(ValueError, match='does not match its own config'): load_classifier(tmp_path/'other_arch.pth')
    with pytest.raises(ValueError, match='trust=True'): load_classifier(model_file.parent/'export.pkl')
    with pytest.raises(ValueError, match='backend'): load_classifier(model_file, backend='tensorrt')
    (tmp_path/'x.onnx').write_bytes(b'not onnx')
    with pytest.raises(ValueError, match=rf'{re.escape(str(tmp_path/"x.onnx"))} is not a readable ONNX model \(InvalidProtobuf\): '
                                         r'make one with `recyclenet export --model MODEL\.pth`'):
        load_classifier(tmp_path/'x.onnx')


def test_trusted_fastai_export_predicts_like_the_model_file(model_file, photos):
    a = load_classifier(model_file).predict(photos[2])
    b = load_classifier(model_file.parent/'export.pkl', trust=True).predict(photos[2])
    assert a['label'] == b['label'] and abs(a['confidence'] - b['confidence']) < 1e-4


def test_fit_folder_on_your_own_classes(sample, tmp_path):
    "Three 'bins' of 12 photos each, as a user would lay them out; held-out accuracy is reported and the model predicts them."
    bins = tmp_path/'my_bins'
    for c in ('glass', 'paper', 'metal'):
        (bins/c).mkdir(parents=True)
        for f in image_files(sample/c): shutil.copy(f, bins/c/f.name)
    learn = fit_folder(bins, epochs=1, lr=1e-2, size=64, bs=8, out=tmp_path/'run', export_pkl=False)
    test = learn.results['test']
    assert learn.config['classes'] == ['glass', 'metal', 'paper'] and test['total'] == 6   # 15% of 12 → 2 per class
    clf = load_classifier(tmp_path/'run'/'model.pth')
    assert clf.classes == ['glass', 'metal', 'paper'] and clf.predict(bins/'glass'/'glass174.jpg')['label'] in clf.classes


def test_fit_folder_needs_two_classes(tmp_path):
    (tmp_path/'only'/'glass').mkdir(parents=True)
    Image.new('RGB', (32, 32)).save(tmp_path/'only'/'glass'/'a.jpg')
    with pytest.raises(ValueError, match='at least two class folders'): fit_folder(tmp_path/'only')
    with pytest.raises(FileNotFoundError, match='not a folder'): fit_folder(tmp_path/'nowhere')


def test_fit_folder_on_a_base_model_keeps_its_trained_backbone(sample, model_file, tmp_path, capsys):
    "`recyclenet fit-folder --base`: the probe reads the base model's own (trained) backbone and attention, at its size."
    from recyclenet.cli import main
    bins = tmp_path/'my_bins'
    for c in ('glass', 'metal'): shutil.copytree(sample/c, bins/c)
    assert main(['fit-folder', str(bins), '--base', str(model_file), '--views', '1', '--out', str(tmp_path/'run')]) == 0
    base, m = load_model_file(model_file, 'cpu'), load_model_file(tmp_path/'run'/'model.pth', 'cpu')
    assert m.config['classes'] == ['glass', 'metal'] and m.config['base'] == str(model_file)
    assert (m.config['arch'], m.config['attention'], m.config['size']) == (base.config['arch'], base.config['attention'], base.config['size'])
    for part in ('body', 'attention'):
        a, b = getattr(m, part).state_dict(), getattr(base, part).state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f'{part} is not the base model\'s'
    capsys.readouterr()
    assert main(['fit-folder', str(bins), '--base', str(tmp_path/'missing.pth')]) != 0
    assert 'missing.pth does not exist' in ''.join(capsys.readouterr())

def test_fit_folder_keep_classes_adds_a_class_beside_the_base_head(sample, model_file, tmp_path):
    "`--keep-classes`: the base's classes first with their head rows unchanged, then a learnt row for the new class."
    from recyclenet.cli import main
    bins = tmp_path/'bins'
    for src, c in (('glass', 'glass'), ('metal', 'metal'), ('trash', 'caps')): shutil.copytree(sample/src, bins/c)
    assert main(['fit-folder', str(bins), '--base', str(model_file), '--keep-classes', '--views', '1',
                 '--out', str(tmp_path/'run')]) == 0
    base, m = load_model_file(model_file, 'cpu'), load_model_file(tmp_path/'run'/'model.pth', 'cpu')
    known = list(base.config['classes'])
    assert m.config['classes'] == known + ['caps'] and m.config['known'] == known
    head, old = m.head[-1], base.head[-1]
    assert torch.equal(head.weight[:len(known)], old.weight) and torch.equal(head.bias[:len(known)], old.bias)
    assert head.weight[-1].abs().sum() > 0, 'the new row was not learnt'


def camera_photos(sample, folder, classes, n=4):
    "`n` photos of each class as another camera takes them: darker and warmer than TrashNet's."
    from PIL import ImageEnhance
    files = []
    for c in classes:
        (folder/c).mkdir(parents=True)
        for f in image_files(sample/c)[:n]:
            im = ImageEnhance.Brightness(Image.open(f).convert('RGB')).enhance(0.5)
            r, g, b = im.split()
            Image.merge('RGB', (r.point(lambda v: min(255, v + 40)), g, b)).save(folder/c/f.name)
            files.append((folder/c/f.name, c))
    return files


def own_loss(model, files):
    "Mean cross-entropy of `model` on `files` [(path, label)]."
    clf = load_classifier(model)
    p = predict_paths(clf, [f for f, _ in files])
    return float(np.mean([-np.log(max(p.loc[i, c], 1e-9)) for i, (_, c) in enumerate(files)]))


def test_adapt_learns_your_camera_and_keeps_the_base(sample, model_file, tmp_path):
    "`recyclenet adapt`: same classes, frozen stages untouched, and a lower loss on the photos it adapted to."
    from recyclenet.cli import main
    from recyclenet.recipes import body_stages, trunk_depth
    files = camera_photos(sample, tmp_path/'camera', ('glass', 'metal', 'plastic'))
    assert main(['adapt', str(model_file), str(tmp_path/'camera'), '--data', 'sample', '--epochs', '3',
                 '--lr', '2e-3', '--own-share', '0.5', '--bs', '8', '--out', str(tmp_path/'run')]) == 0
    base, m = load_model_file(model_file, 'cpu'), load_model_file(tmp_path/'run'/'model.pth', 'cpu')
    assert m.config['classes'] == base.config['classes'] and m.config['adapt'] == str(tmp_path/'camera')
    cut = trunk_depth(m)
    for a, b in zip(body_stages(m)[:cut], body_stages(base)[:cut]):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(m.head[-1].weight, base.head[-1].weight)
    res = json.loads((tmp_path/'run'/'results.json').read_text())
    assert res['valid_before']['total'] == res['valid']['total'] == 12
    before, after = own_loss(model_file, files), own_loss(tmp_path/'run'/'model.pth', files)
    assert after < 0.8*before, (before, after)


def test_adapt_adds_a_class_the_model_lacks(sample, model_file, tmp_path):
    "A photo folder named as none of the model's classes becomes a new class, learnt by the later stages and the head."
    from recyclenet.cli import main
    files = camera_photos(sample, tmp_path/'camera', ('glass', 'metal'))
    (tmp_path/'camera'/'metal').rename(tmp_path/'camera'/'caps')
    caps = [(tmp_path/'camera'/'caps'/f.name, 'caps') for f, c in files if c == 'metal']
    assert main(['adapt', str(model_file), str(tmp_path/'camera'), '--data', 'sample', '--epochs', '3',
                 '--lr', '2e-3', '--own-share', '0.5', '--bs', '8', '--out', str(tmp_path/'run')]) == 0
    known = list(load_model_file(model_file, 'cpu').config['classes'])
    m = load_model_file(tmp_path/'run'/'model.pth', 'cpu')
    assert m.config['classes'] == known + ['caps'] and m.config['known'] == known
    p = predict_paths(load_classifier(tmp_path/'run'/'model.pth'), [f for f, _ in caps])
    assert (p.label == 'caps').mean() >= 0.5, p.label.tolist()


def test_adapt_refuses_a_misspelt_class_a_missing_model_and_an_empty_folder(sample, model_file, tmp_path, capsys):
    from recyclenet.cli import main
    camera_photos(sample, tmp_path/'camera', ('glass', 'metal'))
    (tmp_path/'camera'/'metal').rename(tmp_path/'camera'/'Metal')
    assert main(['adapt', str(model_file), str(tmp_path/'camera'), '--data', 'sample']) == 2
    err = capsys.readouterr().err
    assert "rename the folder(s) ['Metal'] to ['metal']" in err and 'Traceback' not in err
    assert main(['adapt', str(tmp_path/'missing.pth'), str(tmp_path/'camera'), '--data', 'sample']) == 2
    assert 'missing.pth does not exist' in capsys.readouterr().err
    (tmp_path/'empty').mkdir()
    assert main(['adapt', str(model_file), str(tmp_path/'empty'), '--data', 'sample']) == 2
    assert 'has no class folders' in capsys.readouterr().err
