"""The webcam widget in a real browser: JupyterLab on 127.0.0.1, headless Chromium whose fake camera films a TrashNet photo.

Chromium and chromedriver are Debian's, found on PATH; the README's second command (what CI runs) installs them first
(INSTALL below). When they are missing the test fails under CI (`CI=true`) and is skipped elsewhere. Environment knobs, used by the latency benchmark: RECYCLENET_WEBCAM_SIZE (model input, default 64),
RECYCLENET_WEBCAM_FRAMES (round trips to wait for, default 20), RECYCLENET_WEBCAM_THREADS (torch threads in the kernel,
default torch's), RECYCLENET_WEBCAM_OUT (a folder for the screenshot and the round-trip times; the screenshot always goes
to the test's tmp folder too).
"""
import io, json, os, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import numpy as np, pytest
from PIL import Image

from recyclenet.data import CLASSES, get_trashnet, image_files
from recyclenet.inference import load_classifier, read_image
from webcam_model import probe_model

ROOT = Path(__file__).resolve().parent.parent
SIZE = int(os.environ.get('RECYCLENET_WEBCAM_SIZE', 64))
FRAMES = int(os.environ.get('RECYCLENET_WEBCAM_FRAMES', 20))
THREADS = os.environ.get('RECYCLENET_WEBCAM_THREADS')
OUT = os.environ.get('RECYCLENET_WEBCAM_OUT')
pytestmark = pytest.mark.browser


INSTALL = 'apt-get update && apt-get install -y chromium chromium-driver'


def under_ci() -> bool: return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')


@pytest.fixture(scope='session')
def chromium():
    "Paths of chromium and chromedriver on PATH: a failure under CI when missing (CI must run this test), else a skip."
    found = {name: shutil.which(name) for name in ('chromium', 'chromedriver')}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        why = (f"{' and '.join(missing)} not found on PATH: the browser test needs Debian's chromium and chromium-driver; "
               f"install them with `{INSTALL}` (as root; the README's second command does)")
        if under_ci(): pytest.fail(why, pytrace=False)
        pytest.skip(why)
    return found['chromium'], found['chromedriver']


def camera_image(fn): return read_image(fn).resize((640, 480))     # a webcam's usual size (sample photos are 256x192)


def camera_frame(fn, side=SIZE) -> bytes:
    "What the kernel gets of photo `fn` through the fake camera (YUV 4:2:0) and the page (shortest side `side`, JPEG)."
    y, cb, cr = camera_image(fn).convert('YCbCr').split()
    half = (y.width//2, y.height//2)
    img = Image.merge('YCbCr', [y, *(c.resize(half).resize(y.size) for c in (cb, cr))]).convert('RGB')
    s = side/min(img.size)
    buf = io.BytesIO(); img.resize((round(img.width*s), round(img.height*s))).save(buf, 'JPEG', quality=85)
    return buf.getvalue()


def write_y4m(fn, out, frames=4):
    "A Y4M clip (limited-range BT.601 4:2:0, what Chromium's fake camera reads) showing photo `fn` still."
    img = camera_image(fn)
    y, cb, cr = (p.point(lambda v: round(16 + v*219/255)) if i == 0 else p.resize((img.width//2, img.height//2)).point(lambda v: round(128 + (v - 128)*224/255))
                 for i, p in enumerate(img.convert('YCbCr').split()))
    frame = b'FRAME\n' + y.tobytes() + cb.tobytes() + cr.tobytes()
    Path(out).write_bytes(f'YUV4MPEG2 W{img.width} H{img.height} F30:1 Ip A1:1 C420jpeg\n'.encode() + frame*frames)
    return Path(out)


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    "A small trained model, the sample photo it sorts most surely right through the camera path, and a clip of that photo."
    d = tmp_path_factory.mktemp('scene')
    model = probe_model(d/'model.pth', size=SIZE)
    files = image_files(get_trashnet('sample'))
    df = load_classifier(model, device='cpu').predict_batch([camera_frame(f) for f in files], bs=len(files), progress=False)
    p = np.sort(df[CLASSES].values, 1)
    margin = np.where(df.label.values == [f.parent.name for f in files], p[:, -1] - p[:, -2], -1)
    photo = files[int(margin.argmax())]
    assert margin.max() > 0.5, f'the model sorts no sample photo surely right ({photo}: {margin.max()})'
    return dict(model=model, photo=photo, label=photo.parent.name, clip=write_y4m(photo, d/'clip.y4m'), dir=d)


def free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "JupyterLab on 127.0.0.1 with a token, serving a temp folder; its kernels import this checkout of recyclenet."
    d = tmp_path_factory.mktemp('lab')
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [str(ROOT), os.environ.get('PYTHONPATH')] if p),
               JUPYTER_RUNTIME_DIR=str(d/'.runtime'), JUPYTERLAB_SETTINGS_DIR=str(d/'.settings'),
               JUPYTERLAB_WORKSPACES_DIR=str(d/'.workspaces'))
    news = d/'.settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')                     # no "Would you like news?" toast over the screenshot
    log = open(d/'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyterlab', '--no-browser', '--ip=127.0.0.1', f'--port={port}',
                             '--ServerApp.port_retries=0', '--allow-root', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={d}',
                             '--LabApp.expose_app_in_browser=True', '--LabApp.news_url=None', '--LabApp.extension_manager=readonly',
                             '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
                            cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}'
    for _ in range(120):
        try:
            urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); break
        except OSError:
            if proc.poll() is not None: break
            time.sleep(0.5)
    else: proc.terminate()
    if proc.poll() is not None: pytest.fail(f'JupyterLab did not start:\n{(d/"lab.log").read_text()[-3000:]}')
    yield dict(url=url, token=token, dir=d)
    proc.terminate()
    try: proc.wait(20)
    except subprocess.TimeoutExpired: proc.kill()
    log.close()


def notebook(*cells) -> str:
    return json.dumps(dict(nbformat=4, nbformat_minor=5, metadata=dict(kernelspec=dict(name='python3', display_name='Python 3', language='python')),
                           cells=[dict(cell_type='code', id=f'c{i}', metadata={}, outputs=[], execution_count=None, source=c) for i, c in enumerate(cells)]))


def open_notebook(chromium, lab, clip, name, *cells):
    "Headless Chromium, its fake camera playing `clip`, with notebook `name` (of `cells`) open in JupyterLab and run."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait
    (lab['dir']/name).write_text(notebook(*cells))
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium[0]
    for a in ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
              '--disable-component-update', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
              f'--use-file-for-fake-video-capture={clip}', '--window-size=1280,900']:
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    driver = webdriver.Chrome(options=opts, service=Service(chromium[1]))
    js = driver.execute_script
    try:
        driver.get(f"{lab['url']}/lab/tree/{name}?reset&token={lab['token']}")   # (reset: no earlier test's tabs)
        WebDriverWait(driver, 90, 0.5).until(lambda d: js(
            'const w = window.jupyterapp && jupyterapp.shell.currentWidget;'
            'return !!(w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel)'))
        js("jupyterapp.commands.execute('application:toggle-left-area'); jupyterapp.commands.execute('notebook:run-all-cells')")
    except Exception: driver.quit(); raise
    return driver


def test_widget_sorts_the_fake_camera_in_jupyterlab(chromium, scene, lab, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    snaps = tmp_path/'snaps'
    driver = open_notebook(chromium, lab, scene['clip'], 'webcam.ipynb',
        (f'import torch; torch.set_num_threads({int(THREADS)})\n' if THREADS else '') +
        'from recyclenet.inference import load_classifier\nfrom recyclenet.webcam import WebcamSorter\n'
        f'w = WebcamSorter(load_classifier({str(scene["model"])!r}, device="cpu"), snapshot_dir={str(snaps)!r}, max_fps=0)\nw')
    js = driver.execute_script
    try:
        shown = lambda d: js("const l = document.querySelector('.rn-webcam .rn-label'); return l && l.dataset.label")
        def enough(d):
            s = js("const r = document.querySelector('.rn-webcam'); return r && r.rnStats")
            return s if s and shown(d) == scene['label'] and s['frames'] >= FRAMES else False
        try: stats = WebDriverWait(driver, 60 + FRAMES, 0.5).until(enough)
        except Exception:
            driver.save_screenshot(str(tmp_path/'webcam_failure.png'))
            info = js("const r = document.querySelector('.rn-webcam'); return r ? r.innerText : document.body.innerText.slice(0, 2000)")
            logs = '\n'.join(str(e) for e in driver.get_log('browser')[-20:])
            pytest.fail(f"widget shows {shown(driver)!r}, expected {scene['label']!r} ({scene['photo'].name}); widget:\n{info}\n"
                        f"browser log:\n{logs}\nlab log:\n{(lab['dir']/'lab.log').read_text()[-2000:]}")
        Select(driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-class')).select_by_value(scene['label'])
        driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-save').click()
        WebDriverWait(driver, 30, 0.5).until(lambda d: image_files(snaps/scene['label']) if (snaps/scene['label']).exists() else False)
        WebDriverWait(driver, 10, 0.2).until(lambda d: 'Saved' in d.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-message').text)
        video = js("const v = document.querySelector('.rn-webcam video'); v.closest('.jp-Cell').scrollIntoView(); return [v.videoWidth, v.videoHeight]")
        shot = tmp_path/'webcam_screenshot.png'
        driver.save_screenshot(str(shot))
        driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-attention').click()         # the attention overlay, model-sized
        WebDriverWait(driver, 30, 0.2).until(lambda d: js("const o = document.querySelector('.rn-webcam .rn-overlay'); return !o.hidden && o.complete && o.naturalWidth") == SIZE)
        driver.save_screenshot(str(tmp_path/'webcam_attention.png'))
        driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-start').click()             # Stop: no more frames
        time.sleep(1)
        n = js("return document.querySelector('.rn-webcam').rnStats.frames")
        time.sleep(1.5)
        assert js("return document.querySelector('.rn-webcam').rnStats.frames") == n
        assert driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-start').text == 'Start'
    finally: driver.quit()

    snap = image_files(snaps/scene['label'])[0]
    with Image.open(snap) as im: assert im.format == 'JPEG' and list(im.size) == video     # the camera's frame, not the small one
    assert len(stats['rtts']) >= FRAMES and all(t > 0 for t in stats['rtts'])
    print(f"\n{scene['photo'].name} shown as {scene['label']}; screenshot: {shot}")
    if OUT:
        out = Path(OUT); out.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out/'webcam_screenshot.png')
        (out/'webcam_roundtrip.json').write_text(json.dumps(dict(size=SIZE, threads=THREADS, photo=scene['photo'].name, label=scene['label'], **stats)))


def in_row(c, q):
    "JS answering `q` about class `c`'s row (`r`), or null without one: rows are redrawn, so never hold on to them."
    return f"const r = document.querySelector('.rn-webcam .rn-classrow[data-class={c}]'); return r && {q};"


def camera_on(driver):
    "Wait for the widget's camera to play; a 60 s wait to reuse."
    from selenium.webdriver.support.ui import WebDriverWait
    js, wait = driver.execute_script, WebDriverWait(driver, 60, 0.2)
    try: wait.until(lambda d: js("const v = document.querySelector('.rn-webcam video'); return v && v.videoWidth > 0"))
    except Exception:
        pytest.fail(f"the camera did not start; page:\n{js('return document.body.innerText.slice(0, 1500)')}\nbrowser log:\n"
                    + '\n'.join(str(e) for e in driver.get_log('browser')[-20:]))
    return wait


def add_class(driver, c):
    "Type class `c` in the widget's box, press Add, and wait for its row."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-newclass').send_keys(c)
    driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-add').click()
    WebDriverWait(driver, 30, 0.2).until(lambda d: d.execute_script(in_row(c, 'true')))


def record(driver, c):
    "● Record class `c` until it has MIN_PHOTOS photos, then ■ Stop; its row shows thumbnails."
    from selenium.webdriver.support.ui import WebDriverWait
    from recyclenet.webcam import MIN_PHOTOS
    js = driver.execute_script
    count = lambda d: js(in_row(c, "parseInt(r.querySelector('.rn-count').textContent)")) or 0
    js(in_row(c, "r.querySelector('.rn-rec').click()"))
    WebDriverWait(driver, 60, 0.2).until(lambda d: count(d) >= MIN_PHOTOS)
    js(in_row(c, "r.querySelector('.rn-rec').click()"))
    assert js(in_row(c, "r.querySelectorAll('.rn-thumbs img').length")) > 0


def open_teacher(chromium, lab, scene, name, snaps, runs, base=None):
    "Notebook `name` showing a `WebcamSorter` that collects into `snaps` and trains (the folder probe) into `runs`."
    return open_notebook(chromium, lab, scene['clip'], name,
        'from recyclenet.config import RunConfig, FOLDER_DEFAULTS\nfrom recyclenet.webcam import WebcamSorter\n'
        f'w = WebcamSorter(snapshot_dir={str(snaps)!r}, base={str(base) if base else None!r}, '
        f'cfg=RunConfig(**{{**FOLDER_DEFAULTS, "size": {SIZE}, "out": {str(runs)!r}}}), max_fps=0)\nw')


def trained(driver, lab, wait_s=120) -> str:
    "Press Train and wait for the widget to say it trained and sorts; its status line."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    js = driver.execute_script
    driver.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-train').click()
    status = lambda d: d.find_element(By.CSS_SELECTOR, '.rn-webcam .rn-status').text
    try: WebDriverWait(driver, wait_s, 0.5).until(lambda d: status(d).startswith(('Trained in', 'Training failed')))
    except Exception:
        pytest.fail(f"no answer after Train; widget:\n{js('return document.querySelector(`.rn-webcam`).innerText')}\n"
                    f"lab log:\n{(lab['dir']/'lab.log').read_text()[-2000:]}")
    assert status(driver).startswith('Trained in'), status(driver)
    return status(driver)


def test_teach_two_classes_from_the_fake_camera(chromium, scene, lab, tmp_path):
    "No model: add two classes in the widget (renaming one in place), record frames of each, Train, see the new labels."
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    from recyclenet.webcam import MIN_PHOTOS

    snaps, classes = tmp_path/'teach', ['jars', 'tins']
    driver = open_teacher(chromium, lab, scene, 'teach.ipynb', snaps, tmp_path/'runs')
    js, find = driver.execute_script, driver.find_element
    try:
        wait = camera_on(driver)
        assert find(By.CSS_SELECTOR, '.rn-webcam .rn-label').text == 'no model yet'
        assert not find(By.CSS_SELECTOR, '.rn-webcam .rn-adapt').is_displayed()     # no base model: nothing to adapt
        add_class(driver, 'jar')                                     # a typo, fixed in place: double-click, type, Enter
        pick = find(By.CSS_SELECTOR, '.rn-webcam .rn-classrow[data-class=jar] .rn-pick')
        ActionChains(driver).double_click(pick).perform()
        wait.until(lambda d: js("return !!document.querySelector('.rn-webcam .rn-rename')"))
        find(By.CSS_SELECTOR, '.rn-webcam .rn-rename').send_keys('s' + Keys.ENTER)
        wait.until(lambda d: js(in_row('jars', 'true')) and not js(in_row('jar', 'true')))
        assert (snaps/'jars').is_dir() and not (snaps/'jar').exists()
        add_class(driver, 'tins')
        for c in classes: record(driver, c)
        counts = {c: len(image_files(snaps/c)) for c in classes}
        time.sleep(1)
        assert counts == {c: len(image_files(snaps/c)) for c in classes}, 'frames were still recorded after Stop'
        trained(driver, lab)
        shown = lambda d: js("const l = document.querySelector('.rn-webcam .rn-label'); return l && l.dataset.label")
        WebDriverWait(driver, 30, 0.5).until(lambda d: shown(d) in classes)
        js("document.querySelector('.rn-webcam').closest('.jp-Cell').scrollIntoView()")
        shot = tmp_path/'teach_screenshot.png'
        driver.save_screenshot(str(shot))
    finally: driver.quit()
    assert all(n >= MIN_PHOTOS for n in counts.values()), counts
    with Image.open(image_files(snaps/classes[0])[0]) as im: assert im.size == camera_image(scene['photo']).size   # full frames
    if OUT: shutil.copy(shot, Path(OUT)/'teach_screenshot.png')


def test_add_a_class_beside_a_base_models_classes(chromium, scene, lab, tmp_path):
    "From a base model, 'and its classes' ticked: record a known class and a new one, Train; the model knows 6 + 1."
    from selenium.webdriver.common.by import By

    snaps, runs = tmp_path/'keep', tmp_path/'runs'
    driver = open_teacher(chromium, lab, scene, 'keep.ipynb', snaps, runs, base=scene['model'])
    js, find = driver.execute_script, driver.find_element
    try:
        camera_on(driver)
        assert find(By.CSS_SELECTOR, '.rn-webcam .rn-base').is_selected()          # "from <base>" is on when given one
        assert find(By.CSS_SELECTOR, '.rn-webcam .rn-adapt').is_displayed()         # and "Adapt base" is offered
        find(By.CSS_SELECTOR, '.rn-webcam .rn-keepbox').click()                     # ... and its classes
        for c in (scene['label'], 'tins'): add_class(driver, c); record(driver, c)
        status = trained(driver, lab)
    finally: driver.quit()
    model = Path(status.split('Model: ')[-1].strip())
    classes = load_classifier(model, device='cpu').classes
    assert classes == [*CLASSES, 'tins'], classes
