#!/usr/bin/env python
"""Build the book as a static website, offline and without Quarto: `python .ci/docs.py [--out _docs]`.

The pages are `nbs/index.ipynb` (the home page), every chapter `nbs/[0-9]*.ipynb` in name order, the benchmark
notebooks `nbs/benchmarks/*.ipynb`, and an API reference with one page per module of `recyclenet/_modidx.py`,
each symbol rendered by nbdev's own `show_doc`. Notebooks are shown with their committed outputs (never run);
`#| hide` cells are left out and the `#|` lines are stripped, as `nbdev_docs` does. Pages keep nbdev's names
(`00_data.ipynb` -> `data.html`), so links in nbdev's style (`data.html#get_trashnet`) and in the notebooks' own
(`00_data.ipynb`) both land on the built page; files a notebook links to inside `nbs/` (figures) are copied over.

The builder is mkdocs + mkdocs-material + mkdocs-jupyter (`pip install -e ".[docs]"`); its configuration is written
into a temporary folder, never into the repository. `--screenshot PATH` also saves a picture of one page
(`--page`, default the first page that shows a figure) taken with headless Chromium.
`nbdev_docs` still works, for whoever has Quarto: settings.ini's nbdev settings are untouched.
"""
from __future__ import annotations
import argparse, configparser, copy, html, importlib, inspect, json, os, posixpath, re, shutil, subprocess, sys, tempfile
import time, unicodedata
from urllib.parse import unquote
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT/'nbs'
IMG_MIMES = ('image/png', 'image/jpeg', 'image/gif')       # what nbconvert shows as an <img> (SVG is inlined)
# the order in which nbconvert picks an output's representation (the first present wins)
MIME_ORDER = ('application/vnd.jupyter.widget-view+json', 'application/javascript', 'text/html', 'text/markdown',
              'text/latex', 'image/svg+xml', 'image/gif', 'image/png', 'image/jpeg', 'application/pdf', 'text/plain')
HIDE_INPUT, HIDE_OUTPUT = 'docs-hide-input', 'docs-hide-output'   # cell tags mkdocs-jupyter is told to honour


def settings() -> configparser.SectionProxy:
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT/'settings.ini', encoding='utf-8')
    return cfg['DEFAULT']


# ---------------------------------------------------------------- pages
@dataclass
class Page:
    src: Path                  # the notebook, under nbs/
    url: str                   # where it is built, relative to the site's root (nbdev's name: 00_data -> data.html)
    title: str
    section: str               # '' (home), 'Chapters' or 'Benchmarks'
    nb: dict = field(repr=False, default=None)

    @property
    def staged(self) -> str: return self.url[:-len('.html')] + '.ipynb'   # its name in the builder's docs folder


def page_url(nb: Path, nbs: Path = NBS) -> str:
    "nbdev's name for the page of notebook `nb` (nbdev.doclinks._nbpath2html): the number prefix goes."
    rel = nb.relative_to(nbs)
    return rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.html').as_posix()


def nb_title(nb: dict, default: str) -> str:
    "The text of the notebook's first markdown heading."
    for c in nb['cells']:
        if c['cell_type'] != 'markdown': continue
        for line in _src(c).splitlines():
            if m := re.match(r'\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$', line): return _plain(m.group(1))
    return default


def _plain(md: str) -> str:
    "Markdown text as plain text (a title): links keep their words, code/emphasis marks go."
    md = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', md)
    return re.sub(r'`|\*\*|(?<!\w)[*_]|[*_](?!\w)|<[^>]+>', '', md).strip()


def discover(nbs: Path = NBS) -> list[Page]:
    "Home, then chapters in name order, then benchmarks: found by glob, so renamed chapters need no change here."
    found = [(nbs/'index.ipynb', '')] * (nbs/'index.ipynb').exists()
    found += [(p, 'Chapters') for p in sorted(nbs.glob('[0-9]*.ipynb'))]
    found += [(p, 'Benchmarks') for p in sorted((nbs/'benchmarks').glob('*.ipynb'))]
    pages = []
    for p, section in found:
        nb = json.loads(p.read_text(encoding='utf-8'))
        pages.append(Page(p, page_url(p, nbs), nb_title(nb, p.stem), section, nb))
    urls = [pg.url for pg in pages]
    dup = {u for u in urls if urls.count(u) > 1}
    if dup: raise SystemExit(f'two notebooks would build the same page: {sorted(dup)}')
    return pages


# ---------------------------------------------------------------- notebook cells
def _src(cell) -> str: return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']

_re_directive = re.compile(r'^\s*#\s*\|\s*(.*?)\s*$')

def directives(src: str) -> tuple[dict, str]:
    "nbdev's `#|` lines at the top of a code cell, as {name: value}, and the code without them."
    lines, d = src.splitlines(), {}
    i = 0
    while i < len(lines) and (not lines[i].strip() or _re_directive.match(lines[i])):
        if m := _re_directive.match(lines[i]):
            if kv := re.match(r'([\w-]+)\s*:?\s*(.*)$', m.group(1)): d[kv.group(1).lower()] = kv.group(2).lower()
        i += 1
    code = '\n'.join(l for l in lines[i:] if not re.search(r'#\s*\|\s*hide_line\s*$', l))
    return d, code.strip('\n')


def shown_cells(nb: dict) -> list[dict]:
    """The cells a reader sees, as nbdev_docs would show them: `#| hide` / `#| include: false` cells and headings
    ending in ' -' left out, `#|` lines stripped; `#| echo: false` hides the code, `#| output: false` the outputs."""
    out = []
    for c in nb['cells']:
        c = copy.deepcopy(c)
        src = _src(c)
        if c['cell_type'] == 'code':
            d, code = directives(src)
            if 'hide' in d or d.get('include') == 'false': continue
            if not code.strip() and not c.get('outputs'): continue
            c['source'] = code
            tags = c.setdefault('metadata', {}).setdefault('tags', [])
            if d.get('echo') == 'false': tags.append(HIDE_INPUT)
            if d.get('output') == 'false': tags.append(HIDE_OUTPUT); c['outputs'] = []
        elif c['cell_type'] == 'markdown':
            s = src.strip()
            if re.match(r'^\s*<!--\s*#\s*\|\s*hide\s*-->', s): continue
            if s.startswith('#') and s.endswith(' -') and '\n' not in s: continue
        out.append(c)
    return out


def output_images(cells: list[dict]) -> int:
    "How many <img> the outputs of `cells` make (PNG/JPEG/GIF outputs, and <img> tags in HTML outputs)."
    n = 0
    for c in cells:
        if HIDE_OUTPUT in c.get('metadata', {}).get('tags', []): continue
        for o in c.get('outputs', []):
            data = o.get('data', {})
            mime = next((m for m in MIME_ORDER if m in data), None)
            if mime in IMG_MIMES: n += 1
            elif mime == 'text/html': n += len(re.findall(r'<img\b', _join(data[mime]), re.I))
    return n


def markdown_images(cells: list[dict]) -> int:
    "How many images the markdown cells of `cells` show (![..](..) and <img> tags)."
    n = 0
    for c in cells:
        if c['cell_type'] != 'markdown': continue
        s = _src(c)
        n += len(re.findall(r'!\[[^\]]*\]\(', s)) + len(re.findall(r'<img\b', s, re.I))
    return n


def expected_images(page: Page) -> int: return output_images(shown_cells(page.nb)) + markdown_images(shown_cells(page.nb))

def _join(v) -> str: return ''.join(v) if isinstance(v, list) else v


# ---------------------------------------------------------------- links
_re_md_link = re.compile(r'(\]\(\s*<?)([^)\s>]+)(>?(?:\s+"[^"]*")?\s*\))')
_re_html_link = re.compile(r'''(\b(?:href|src)=)(["'])(.*?)\2''', re.I)
_re_ref_link = re.compile(r'^(\s{0,3}\[[^\]]+\]:\s*<?)(\S+?)(>?(?:\s.*)?)$', re.M)


def anchor(frag: str) -> str:
    "A heading's id on a built notebook page (mkdocs-jupyter's: lower case), from Jupyter's (`#The-end`) or nbdev's."
    frag = unicodedata.normalize('NFKD', unquote(frag)).encode('ascii', 'ignore').decode('ascii')
    return re.sub(r'[-\s]+', '-', re.sub(r'[^\w\s-]', '', frag).strip().lower())


class Linker:
    "Rewrites the links of one page's markdown: notebooks to their built pages, files in nbs/ copied alongside."
    def __init__(self, pages: list[Page], cfg, nbs: Path = NBS):
        self.nbs = nbs.resolve()
        self.by_src = {pg.src.resolve(): pg for pg in pages}
        self.by_url = {pg.url: pg for pg in pages}
        self.blob = f"{cfg.get('git_url', '').rstrip('/')}/blob/{cfg.get('branch', 'main')}/"
        self.tree = self.blob.replace('/blob/', '/tree/', 1)
        self.assets: set[Path] = set()
        self.problems: list[str] = []

    def target(self, page: Page, link: str) -> str:
        if link.startswith('#'): return '#' + anchor(link[1:])
        if re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', link) or link.startswith('/') or not link: return link
        path, hash_, frag = link.partition('#')
        p = (page.src.parent/path).resolve()
        here = posixpath.dirname(page.url) or '.'
        to = lambda url: posixpath.relpath(url, here) + hash_ + anchor(frag)       # (a page's anchors are lower case)
        if p in self.by_src: return to(self.by_src[p].url)                        # 01_models.ipynb
        try: rel = p.relative_to(self.nbs).as_posix()
        except ValueError: rel = None
        if rel is not None and rel.endswith('.html') and rel in self.by_url: return to(rel)   # nbdev's models.html
        if p.is_file() and rel is not None:                                       # a figure or table in nbs/
            self.assets.add(p); return link
        if p.exists():                                                            # elsewhere in the repository
            try: return (self.blob if p.is_file() else self.tree) + p.relative_to(ROOT.resolve()).as_posix() + hash_ + frag
            except ValueError: pass
        self.problems.append(f'{page.src}: link to {link!r}, which is not in the repository')
        return link

    def markdown(self, page: Page, s: str) -> str:
        s = _re_md_link.sub(lambda m: m.group(1) + self.target(page, m.group(2)) + m.group(3), s)
        s = _re_ref_link.sub(lambda m: m.group(1) + self.target(page, m.group(2)) + m.group(3), s)
        return _re_html_link.sub(lambda m: m.group(1) + m.group(2) + self.target(page, m.group(3)) + m.group(2), s)


def code_in_headings(md: str) -> str:
    """`code` in a heading as <code>code</code>: mkdocs-jupyter drops `code` from the table of contents' anchors but
    nbconvert keeps it in the heading's id, so the contents' links would miss (e.g. of the heading "# The `recyclenet` command")."""
    out, fence = [], None
    for line in md.split('\n'):
        if m := re.match(r'\s{0,3}(```+|~~~+)', line):
            fence = None if fence and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) else (fence or m.group(1))
        elif not fence and re.match(r'\s{0,3}#{1,6}\s', line):
            line = re.sub(r'`([^`]+)`', lambda c: f'<code>{html.escape(c.group(1))}</code>', line)
        out.append(line)
    return '\n'.join(out)


def staged_nb(page: Page, linker: Linker) -> dict:
    "The notebook as the builder gets it: shown cells only, links rewritten."
    nb = copy.deepcopy(page.nb)
    nb['cells'] = shown_cells(page.nb)
    for c in nb['cells']:
        if c['cell_type'] == 'markdown': c['source'] = code_in_headings(linker.markdown(page, _src(c)))
    nb.setdefault('metadata', {}).pop('widgets', None)      # (widget state would pull a widget manager from a CDN)
    return nb


# ---------------------------------------------------------------- API reference
def modidx() -> dict:
    spec = importlib.util.spec_from_file_location('_modidx', ROOT/settings()['lib_path']/'_modidx.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod.d


def _public(sym: str, mod: str) -> bool:
    parts = sym[len(mod)+1:].split('.')
    return all(not p.startswith('_') or (p.startswith('__') and p.endswith('__') and p != '__init__') for p in parts)


def api_url(mod: str) -> str: return f'api/{mod}.html'


def api_page(mod: str, syms: dict, pages_by_url: dict, problems: list) -> str:
    "One module's page: its docstring, then nbdev's show_doc markdown for each public symbol, in source order."
    from nbdev.showdoc import show_doc
    m = importlib.import_module(mod)
    md = [f'# {mod}', '']
    if m.__doc__: md += [inspect.cleandoc(m.__doc__), '']
    entries = []
    for sym, (doc, py) in syms.items():
        if not _public(sym, mod): continue
        obj = m
        try:
            for part in sym[len(mod)+1:].split('.'): obj = getattr(obj, part)
        except AttributeError:
            problems.append(f'{sym} is in _modidx.py but not in {mod}'); continue
        try: line = inspect.getsourcelines(inspect.unwrap(obj))[1]
        except (TypeError, OSError): line = 0
        entries.append((line, sym, obj, doc))
    for line, sym, obj, doc in sorted(entries, key=lambda e: (e[0] == 0, e[0], e[1])):
        name = sym[len(mod)+1:]
        r = show_doc(obj, name=name, title_level=2 + name.count('.'))
        if r is None:      # show_doc skips type-dispatched methods (fastai's encodes): document the function under it
            f = getattr(obj, '_f', None) or (obj.first() if callable(getattr(obj, 'first', None)) else None)
            r = show_doc(f, name=name, title_level=2 + name.count('.')) if f else None
        if r is None: problems.append(f'show_doc has nothing for {sym}'); continue
        text = r._repr_markdown_()
        h, esc = '#' * (2 + name.count('.')), name.replace('_', r'\_')   # (__x__ in a heading would read as bold)
        text = text.replace(f'\n{h} {name}\n', f'\n{h} {esc}\n', 1)
        text = text.replace('#LNone)', f'#L{line})' if line else ')')   # (nbdev 2.4 looks the line up by object)
        chapter = pages_by_url.get(doc.partition('#')[0])
        if chapter:                                                 # where the chapter teaches it
            text = text.rstrip() + f'\n\nIn the chapter: [{chapter.title}](../{chapter.url})\n'
        md += [text.strip(), '']
    return '\n'.join(md)


# ---------------------------------------------------------------- build
def mkdocs_config(cfg, pages: list[Page], mods: list[str], docs_dir: Path, site_dir: Path) -> dict:
    nav = [{pg.title: pg.staged} for pg in pages if pg.section == '']
    for section in ('Chapters', 'Benchmarks'):
        items = [{pg.title: pg.staged} for pg in pages if pg.section == section]
        if items: nav.append({section: items})
    if mods: nav.append({'API reference': [{m: f'api/{m}.md'} for m in mods]})
    return {
        'site_name': cfg.get('title', cfg['lib_name']), 'site_description': cfg.get('description', ''),
        'copyright': f"Copyright {cfg.get('copyright', '')}", 'docs_dir': str(docs_dir), 'site_dir': str(site_dir),
        'use_directory_urls': False,             # foo.html, so the site also reads from disk (file://)
        'nav': nav,
        'theme': {'name': 'material', 'font': False,                    # no Google Fonts: the site is read offline
                  'features': ['navigation.sections', 'navigation.top', 'content.code.copy', 'toc.follow']},
        'extra': {'social': [{'icon': 'fontawesome/brands/github', 'link': cfg.get('git_url', '')}],
                  'generator': False},
        'markdown_extensions': ['tables', 'attr_list', 'admonition', 'md_in_html', {'toc': {'permalink': True}},
                                'pymdownx.highlight', 'pymdownx.superfences'],
        # (no 'offline' plugin: it loads a Worker shim from unpkg.com; search needs the site served over http)
        'plugins': ['search',
                    {'mkdocs-jupyter': {'execute': False, 'include_source': False, 'cache': False, 'no_prompt': True,
                                        'ignore_h1_titles': True, 'include': ['*.ipynb'],
                                        'remove_tag_config': {'remove_input_tags': [HIDE_INPUT],
                                                              'remove_all_outputs_tags': [HIDE_OUTPUT]}}}],
        'validation': {'nav': {'omitted_files': 'ignore'}},
    }


_re_cdn_script = re.compile(r'<script[^>]*\bsrc="https?://[^"]*(?:mathjax|MathJax|mermaid|require)[^"]*"[^>]*>\s*</script>\s*')


def _jupyter_env() -> dict:
    "The environment, with nbconvert's templates findable from a venv made with --system-site-packages."
    env, base = dict(os.environ, NO_MKDOCS_2_WARNING='1'), Path(sys.base_prefix)/'share'/'jupyter'
    if base.is_dir() and Path(sys.prefix) != Path(sys.base_prefix):
        env['JUPYTER_PATH'] = os.pathsep.join(filter(None, [env.get('JUPYTER_PATH'), str(base)]))
    return env


def build(out: Path | str = ROOT/'_docs', nbs: Path = NBS, api: bool = True, quiet: bool = True) -> dict:
    "Build the site of the notebooks in `nbs` (and the API reference) into `out`: {'pages', 'modules', 'problems', 'out'}."
    import yaml
    out, cfg, nbs = Path(out).resolve(), settings(), Path(nbs)
    pages = discover(nbs)
    linker, problems = Linker(pages, cfg, nbs), []
    d = modidx()
    mods = sorted(m for m in d['syms'] if any(_public(s, m) for s in d['syms'][m])) if api else []
    cwd = os.getcwd(); os.chdir(ROOT)                     # (nbdev reads settings.ini from the working directory)
    try:
        with tempfile.TemporaryDirectory(prefix='recyclenet-docs-') as tmp:
            docs = Path(tmp)/'docs'
            for pg in pages:
                f = docs/pg.staged; f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps(staged_nb(pg, linker), ensure_ascii=False), encoding='utf-8')
            for a in linker.assets:
                f = docs/a.relative_to(nbs.resolve()); f.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(a, f)
            by_url = {pg.url: pg for pg in pages}
            (docs/'api').mkdir(exist_ok=True)
            for m in mods: (docs/'api'/f'{m}.md').write_text(api_page(m, d['syms'][m], by_url, problems), encoding='utf-8')
            conf = Path(tmp)/'mkdocs.yml'
            conf.write_text(yaml.safe_dump(mkdocs_config(cfg, pages, mods, docs, out), sort_keys=False, allow_unicode=True))
            cmd = [sys.executable, '-m', 'mkdocs', 'build', '--clean', '-f', str(conf)] + ['-q'] * quiet
            subprocess.run(cmd, check=True, cwd=tmp, env=_jupyter_env())
    finally: os.chdir(cwd)
    # nbconvert's template asks MathJax/Mermaid/RequireJS from a CDN; the book uses none of them, and the site must
    # not wait on the network
    for f in out.rglob('*.html'):
        s = f.read_text(encoding='utf-8')
        if (t := _re_cdn_script.sub('', s)) != s: f.write_text(t, encoding='utf-8')
    problems += linker.problems
    for p in problems: print('warning:', p, file=sys.stderr)
    return {'pages': pages, 'modules': mods, 'problems': problems, 'out': out}


# ---------------------------------------------------------------- browser
def chrome(width=1280, height=900):
    "Headless Chromium (Debian's chromium + chromium-driver) that cannot reach the network."
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    if b := shutil.which('chromium'): opts.binary_location = b
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', f'--window-size={width},{height}',
              '--host-resolver-rules=MAP * ~NOTFOUND', '--allow-file-access-from-files', '--hide-scrollbars'):
        opts.add_argument(a)
    drv = shutil.which('chromedriver')
    return webdriver.Chrome(options=opts, service=Service(drv) if drv else None)


def screenshot(site: Path, page_url: str, path: Path, width=1280, height=800):
    "A picture of `page_url` of the built `site`, scrolled to its first figure; a small PNG (palette)."
    from PIL import Image
    import io
    d = chrome(width, height)
    try:
        d.get((Path(site).resolve()/page_url).as_uri())
        d.execute_script("""const i = [...document.querySelectorAll('article img')].find(i => i.naturalWidth > 0);
                            if (i) { i.scrollIntoView({block: 'center'}); }""")
        time.sleep(1)                                   # (the header's title changes over with a transition)
        png = d.get_screenshot_as_png()
    finally: d.quit()
    img = Image.open(io.BytesIO(png)).convert('RGB').quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return Path(path)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default=str(ROOT/settings().get('doc_path', '_docs')), help='site folder (settings.ini doc_path)')
    ap.add_argument('--screenshot', metavar='PATH', help='also save a screenshot of one page')
    ap.add_argument('--page', help='the page to screenshot (its url, e.g. ablation.html); default: the first with a figure')
    a = ap.parse_args()
    res = build(a.out)
    print(f"built {len(res['pages'])} notebook pages and {len(res['modules'])} API pages into {res['out']}")
    if a.screenshot:
        url = a.page or next((pg.url for pg in res['pages'] if expected_images(pg)), res['pages'][0].url)
        print('screenshot of', url, '->', screenshot(res['out'], url, Path(a.screenshot)))
