import os, warnings
from pathlib import Path
import pytest

warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated', category=FutureWarning)
ROOT = Path(__file__).resolve().parent.parent
FULL_TRASHNET = Path(os.environ.get('RECYCLENET_FULL_DATA', ROOT.parent/'shared'/'datasets'/'trashnet'))

@pytest.fixture(scope='session')
def sample():
    from recyclenet.data import get_trashnet
    return get_trashnet('sample')

@pytest.fixture(scope='session')
def full_trashnet():
    if not (FULL_TRASHNET/'dataset-resized').exists(): pytest.skip(f'full TrashNet not at {FULL_TRASHNET}')
    return FULL_TRASHNET/'dataset-resized'

def pytest_configure(config):
    config.addinivalue_line('markers', 'browser: end-to-end test in a real browser (JupyterLab + headless Chromium)')
