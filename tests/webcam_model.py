"A small trained model in seconds, for the webcam tests: ImageNet EfficientNet-Lite0 features and a linear head fitted on the sample."
from pathlib import Path

import numpy as np, torch

from recyclenet.data import CLASSES, get_trashnet, image_files
from recyclenet.inference import read_image, to_input
from recyclenet.models import recyclenet_model


def probe_model(fn, size=64, attention='ours', steps=300) -> Path:
    "Fit only the head of a Lite0 RecycleNet (attention as initialised) on all 72 sample photos; save it as a model file at `fn`."
    torch.manual_seed(0)
    m = recyclenet_model('efficientnet_lite0', attention, len(CLASSES)).eval()
    files = image_files(get_trashnet('sample'))
    x = torch.from_numpy(np.stack([to_input(read_image(f), size, m.stats) for f in files]))
    y = torch.tensor([CLASSES.index(f.parent.name) for f in files])
    with torch.no_grad(): feats = m.head[:2](m.attention(m.body(x)))
    lin = m.head[-1]
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad(); torch.nn.functional.cross_entropy(lin(feats), y).backward(); opt.step()
    config = dict(m.config, classes=CLASSES, stats=[list(s) for s in m.stats], size=size, resize='crop')
    torch.save(dict(model=m.state_dict(), config=config, format='recyclenet-1'), fn)
    return Path(fn)
