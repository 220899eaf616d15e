"The webcam widget's kernel side, without a browser: frames in, answers out, errors shown, snapshots saved."
import io
from datetime import datetime, timezone

import numpy as np, pytest
from PIL import Image, UnidentifiedImageError

from recyclenet.data import CLASSES, image_files
from recyclenet.inference import load_classifier, read_image
from recyclenet.webcam import WebcamSorter, label_frame, opencv_loop
from webcam_model import probe_model


@pytest.fixture(scope='module')
def clf(tmp_path_factory):
    "A Lite0 RecycleNet with an untrained head: arbitrary answers, but not certain ones (the threshold test needs p < 1)."
    return load_classifier(probe_model(tmp_path_factory.mktemp('model')/'model.pth', steps=0), device='cpu')


def jpeg(fn, side=64, fmt='JPEG'):
    img = read_image(fn)
    img = img.resize((round(img.width*side/min(img.size)), round(img.height*side/min(img.size))))
    buf = io.BytesIO(); img.save(buf, fmt, quality=85)
    return buf.getvalue()


@pytest.fixture(scope='module')
def frames(sample):
    return {c: jpeg(image_files(sample/c)[0]) for c in CLASSES}


@pytest.fixture
def widget(clf, tmp_path):
    return WebcamSorter(clf, snapshot_dir=tmp_path/'bins')


def test_bytes_in_prediction_out(widget, clf, frames):
    for c, data in frames.items():
        r = widget.handle_frame(data)
        p = clf.predict(data)
        assert r['label'] == p['label'] and r['topk'] == p['topk'] and len(r['topk']) == 3
        assert widget.result == r and widget.frame == data and r['ms'] > 0 and 'error' not in r


def test_frame_message_from_the_page(widget, frames):
    widget._on_msg(widget, {'type': 'frame', 'id': 'abc:1'}, [memoryview(frames['glass'])])
    assert widget.result['frame'] == 'abc:1' and widget.result['label'] in CLASSES


@pytest.mark.parametrize('bad', [b'', b'\xff\xd8 not really a jpeg', 'truncated'])
def test_bad_bytes_are_an_error_in_the_widget_not_a_dead_widget(widget, frames, bad):
    if bad == 'truncated': bad = frames['paper'][:len(frames['paper'])//3]
    widget._on_msg(widget, {'type': 'frame', 'id': 'v:1'}, [memoryview(bad)])
    r = widget.result
    assert r['frame'] == 'v:1' and r['error'].startswith('This frame could not be labelled') and 'label' not in r
    assert widget.frame is None                                    # a bad frame is never kept (nor snapshotted)
    assert 'error' not in widget.handle_frame(frames['paper'])     # and the next good frame works


def test_threshold_says_not_sure(widget, clf, frames):
    data = frames['metal']
    conf = clf.predict(data)['confidence']
    assert conf < 1
    widget.threshold = conf
    r = widget.handle_frame(data)
    assert r['sure'] and r['shown'] == r['label']
    widget.threshold = min(1., conf + 1e-3)
    r = widget.handle_frame(data)
    assert not r['sure'] and r['shown'] == 'not sure' and r['label'] == clf.predict(data)['label']
    assert label_frame(clf, data, threshold=0)['shown'] == r['label']


def test_attention_overlay(widget, frames):
    assert widget.can_overlay
    widget.handle_frame(frames['glass'])
    assert widget.overlay == b''
    widget.attention = True
    widget.handle_frame(frames['glass'])
    png = Image.open(io.BytesIO(widget.overlay))
    assert (png.format, png.mode, png.size) == ('PNG', 'RGBA', (64, 64))
    assert 'attention' not in widget.result                        # the map travels as the PNG, not in the JSON


def test_snapshot_writes_a_readable_jpeg_in_the_class_folder(widget, frames, tmp_path):
    fn = widget.save_snapshot('cardboard', frames['cardboard'])
    assert fn.parent == tmp_path/'bins'/'cardboard' and fn.suffix == '.jpg'
    with Image.open(fn) as im: assert im.format == 'JPEG' and im.size == read_image(frames['cardboard']).size
    widget.handle_frame(frames['trash'])
    fn2 = widget.save_snapshot('trash')                             # default: the last frame labelled
    assert fn2.read_bytes() == frames['trash'] and 'trash' in widget.message
    fn3 = widget.save_snapshot('plastic', jpeg(fn, fmt='PNG'))
    with Image.open(fn3) as im: assert im.format == 'JPEG'


def test_snapshot_refuses_bad_input(widget, frames, tmp_path):
    with pytest.raises(ValueError, match='No frame to save yet'): widget.save_snapshot('glass')
    with pytest.raises(ValueError, match='cannot be a class folder'): widget.save_snapshot('../x', frames['glass'])
    with pytest.raises(UnidentifiedImageError, match=r"^4 bytes that are no image PIL can read \(JPEG, PNG, WebP, \.\.\.\): they begin b'junk'$"):
        widget.save_snapshot('glass', b'junk')
    assert not (tmp_path/'bins').exists()                          # nothing written for it
    widget._on_msg(widget, {'type': 'snapshot', 'label': 'glass'}, [memoryview(b'junk')])
    assert widget.message == "Not saved: 4 bytes that are no image PIL can read (JPEG, PNG, WebP, ...): they begin b'junk'"
    widget._on_msg(widget, {'type': 'snapshot', 'label': 'glass'}, [memoryview(frames['glass'])])
    assert [p.name for p in (tmp_path/'bins').iterdir()] == ['glass'] and len(image_files(tmp_path/'bins'/'glass')) == 1


def test_no_camera_offers_upload(widget, clf, frames):
    assert widget.upload.layout.display == 'none'
    widget.camera_error = 'Camera permission was refused.'
    assert widget.upload.layout.display == ''
    data = frames['plastic']
    widget.upload.value = ({'name': 'a.jpg', 'type': 'image/jpeg', 'size': len(data), 'content': memoryview(data), 'last_modified': datetime.now(timezone.utc)},)
    assert widget.still == data and widget.result['label'] == clf.predict(data)['label']
    widget.camera_error = ''
    assert widget.upload.layout.display == 'none'


def test_displays_with_its_upload(widget):
    bundle = widget._repr_mimebundle_()
    view = bundle[0] if isinstance(bundle, tuple) else bundle
    assert view['application/vnd.jupyter.widget-view+json']['model_id'] == widget.box.model_id
    assert widget.box.children == (widget, widget.upload)


def test_opencv_loop_on_a_video_file(clf, sample, tmp_path):
    import cv2
    clip = str(tmp_path/'clip.avi')
    out = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*'MJPG'), 5, (128, 96))
    for f in image_files(sample/'glass')[:3]: out.write(np.asarray(read_image(f).resize((128, 96)))[..., ::-1])
    out.release()
    rs = opencv_loop(clf, clip, frames=2)
    assert len(rs) == 2 and all(r['label'] in CLASSES and r['ms'] > 0 for r in rs)
    assert len(opencv_loop(clf, clip)) == 3
    with pytest.raises(RuntimeError, match='opened nothing'): opencv_loop(clf, str(tmp_path/'missing.avi'))
