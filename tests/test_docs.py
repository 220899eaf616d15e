"""The book's website: `.ci/docs.py` builds it offline, and headless Chromium (no network) reads every page.

Every chapter, benchmark and API page loads with its title, every image on it loads (as many as its notebook shows),
and every internal link lands on a built file (and its #anchor on an id there). A small made-up book checks what
today's chapters lack: PNG outputs, `#| hide` / `#| echo: false` cells, links between chapters in both styles.
Chromium and chromedriver are Debian's (`apt-get install -y chromium chromium-driver`); under CI a missing one fails.
"""
import base64, importlib.util, json, os, re, shutil, sys, zlib, struct
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.browser


def _load_docs():
    spec = importlib.util.spec_from_file_location('recyclenet_docs', ROOT/'.ci'/'docs.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod

docs = _load_docs()


def under_ci() -> bool: return os.environ.get('CI', '').strip().lower() in ('1', 'true', 'yes')

def _missing(why):
    if under_ci(): pytest.fail(why, pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    for m in ('mkdocs', 'material', 'mkdocs_jupyter'):
        if importlib.util.find_spec(m) is None: _missing(f'{m} is not installed: pip install -e ".[docs]"')
    return docs.build(tmp_path_factory.mktemp('site')/'_docs')


@pytest.fixture(scope='module')
def browser():
    missing = [n for n in ('chromium', 'chromedriver') if shutil.which(n) is None]
    if missing: _missing(f"{' and '.join(missing)} not found on PATH: apt-get install -y chromium chromium-driver")
    d = docs.chrome()
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def visit(d, site: Path, url: str) -> dict:
    "Open page `url` of `site`; what the reader gets: title, first h1, images (src, loaded), links (resolved hrefs)."
    d.get((site/url).as_uri())
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(d, 10).until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
    return d.execute_script("""
        const h1 = document.querySelector('article h1');
        return {title: document.title, h1: h1 ? h1.textContent.replace('¶', '').trim() : null,
                ids: [...document.querySelectorAll('[id]')].map(e => e.id),
                article_imgs: [...document.querySelectorAll('article img')].map(i => [i.getAttribute('src').slice(0, 80), i.naturalWidth]),
                imgs: [...document.images].map(i => [i.getAttribute('src').slice(0, 80), i.naturalWidth]),
                links: [...document.querySelectorAll('a[href]')].map(a => [a.getAttribute('href'), a.href])};""")


def page_title(page, site_name='RecycleNet'):
    return site_name if page.url == 'index.html' else f'{page.title} - {site_name}'


# ------------------------------------------------------------------ the real book
@pytest.fixture(scope='module')
def visits(built, browser):
    site = built['out']
    urls = [pg.url for pg in built['pages']] + [docs.api_url(m) for m in built['modules']]
    return {u: visit(browser, site, u) for u in urls}


def test_every_notebook_and_module_has_a_page(built):
    nbs = ROOT/'nbs'
    want = {'index.ipynb'} | {p.name for p in nbs.glob('[0-9]*.ipynb')} | {f'benchmarks/{p.name}' for p in (nbs/'benchmarks').glob('*.ipynb')}
    assert {pg.src.relative_to(nbs).as_posix() for pg in built['pages']} == want
    assert [pg.src.name for pg in built['pages'] if pg.section == 'Chapters'] == sorted(p.name for p in nbs.glob('[0-9]*.ipynb'))
    d = docs.modidx()
    assert built['modules'] and set(built['modules']) == {m for m, s in d['syms'].items() if any(docs._public(k, m) for k in s)}
    for url in [pg.url for pg in built['pages']] + [docs.api_url(m) for m in built['modules']]:
        assert (built['out']/url).is_file(), f'{url} was not built'
    assert built['problems'] == [], 'the build reported problems'


def test_pages_load_with_their_titles(built, visits):
    for pg in built['pages']:
        v = visits[pg.url]
        assert v['title'] == page_title(pg), f'{pg.url} ({pg.src.name}): title {v["title"]!r}'
        assert v['h1'] and docs._plain(v['h1']) == pg.title, f'{pg.url} ({pg.src.name}): first heading {v["h1"]!r}'
    for m in built['modules']:
        v = visits[docs.api_url(m)]
        assert v['title'] == f'{m} - RecycleNet' and v['h1'] == m, f'{docs.api_url(m)}: {v["title"]!r} / {v["h1"]!r}'


def test_api_pages_document_every_public_symbol(built, visits):
    from markdown.extensions.toc import slugify
    d = docs.modidx()
    for m in built['modules']:
        ids = set(visits[docs.api_url(m)]['ids'])
        for sym in d['syms'][m]:
            if docs._public(sym, m):
                name = sym[len(m)+1:]
                assert slugify(name, '-') in ids, f'{docs.api_url(m)}: no show_doc heading for {name}'


def test_every_image_loads(built, visits):
    shown = 0
    for pg in built['pages']:
        v, n = visits[pg.url], docs.expected_images(pg)
        for src, w in v['imgs']: assert w > 0, f'{pg.url} ({pg.src.name}): image {src!r} did not load'
        loaded = sum(w > 0 for _, w in v['article_imgs'])
        assert loaded >= n, f'{pg.url} ({pg.src.name}): the notebook shows {n} images, the page loaded {loaded}'
        shown += loaded
    assert shown >= 1                        # (90_ablation's figure, today)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(); self.refs, self.ids = [], set()
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if 'id' in a: self.ids.add(a['id'])
        for k in ('href', 'src'):
            if a.get(k) and not (tag == 'a' and k == 'src'): self.refs.append(a[k])


def internal(ref: str) -> bool:
    return not re.match(r'^[a-zA-Z][a-zA-Z0-9+.-]*:', ref) and not ref.startswith('//')


def check_links(site: Path) -> list[str]:
    "Every relative href/src in every built page: (file exists, #anchor is an id in it); the failures, named."
    parsed, bad = {}, []
    def parse(f):
        if f not in parsed:
            p = _Refs(); p.feed(f.read_text(encoding='utf-8')); parsed[f] = p
        return parsed[f]
    for f in sorted(site.rglob('*.html')):
        if f.name == '404.html' and f.parent == site: continue     # (a server's page: its links are from the server's root)
        for ref in parse(f).refs:
            if not internal(ref): continue
            path, _, frag = ref.partition('#')
            target = (f.parent/unquote(urlsplit(path).path)).resolve() if path else f
            if target.is_dir(): target = target/'index.html'
            where = f'{f.relative_to(site)}: link {ref!r}'
            if not target.is_file(): bad.append(f'{where} -> missing {target}'); continue
            if frag and target.suffix == '.html' and unquote(frag) not in parse(target).ids:
                bad.append(f'{where} -> no id {frag!r} in {target.relative_to(site)}')
    return bad


def test_internal_links_resolve(built, visits, browser):
    site = built['out']
    assert check_links(site) == []
    # what the browser resolves on each page, too; then open a sample of the pages they lead to
    targets = set()
    for url, v in visits.items():
        for raw, href in v['links']:
            if not href.startswith('file://'): continue
            f = Path(unquote(urlsplit(href).path))
            assert f.is_file() or (f/'index.html').is_file(), f'{url}: link {raw!r} -> {href} is not a built file'
            if f.suffix == '.html' and f != site/url: targets.add(href)
    sample = sorted(targets)[::max(1, len(targets)//12)]
    for href in sample:
        browser.get(href)
        assert browser.title.endswith('RecycleNet') and browser.find_elements('css selector', 'article'), f'{href}: not a page of the book'
        frag = urlsplit(href).fragment
        if frag: assert browser.execute_script('return !!document.getElementById(arguments[0])', unquote(frag)), f'{href}: no #{frag}'


def test_nothing_is_fetched_from_the_network(built):
    "The site reads offline: no script, stylesheet or image from another host (links out are fine)."
    for f in built['out'].rglob('*.html'):
        s = f.read_text(encoding='utf-8')
        ext = [m.group(0) for m in re.finditer(r'<(?:script|img|iframe)\b[^>]*\bsrc="(?:https?:)?//[^"]*"|<link\b[^>]*\bhref="(?:https?:)?//[^"]*"[^>]*>', s)
               if not m.group(0).startswith('<link') or 'stylesheet' in m.group(0) or 'preload' in m.group(0)]
        assert not ext, f'{f.relative_to(built["out"])} loads {ext[:3]} from the network'


# ------------------------------------------------------------------ a made-up book: what today's chapters lack
def _png(w=8, h=6, rgb=(200, 30, 30)) -> bytes:
    raw = b''.join(b'\0' + bytes(rgb) * w for _ in range(h))
    chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')


def _nb(*cells):
    return {'cells': list(cells), 'metadata': {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}},
            'nbformat': 4, 'nbformat_minor': 5}

def _md(s): return {'cell_type': 'markdown', 'metadata': {}, 'source': s}

def _code(s, *outputs): return {'cell_type': 'code', 'metadata': {}, 'source': s, 'outputs': list(outputs), 'execution_count': 1}

def _img_out(png): return {'output_type': 'display_data', 'metadata': {}, 'data': {'image/png': base64.b64encode(png).decode(), 'text/plain': '<Figure>'}}

def _text_out(s): return {'output_type': 'stream', 'name': 'stdout', 'text': s}


@pytest.fixture(scope='module')
def small_book(tmp_path_factory):
    for m in ('mkdocs', 'material', 'mkdocs_jupyter'):
        if importlib.util.find_spec(m) is None: _missing(f'{m} is not installed: pip install -e ".[docs]"')
    nbs = tmp_path_factory.mktemp('book')/'nbs'
    (nbs/'benchmarks'/'results').mkdir(parents=True)
    (nbs/'benchmarks'/'results'/'fig.png').write_bytes(_png(20, 10, (30, 30, 200)))
    (nbs/'index.ipynb').write_text(json.dumps(_nb(_md('# A *small* book\n\nStart with [the data](00_data.ipynb).'))))
    (nbs/'00_data.ipynb').write_text(json.dumps(_nb(
        _code('#| hide\nSECRET_HIDDEN_CELL = 1'),
        _md('# Data: `photos` in\n\nNext: [models](01_models.ipynb#The-end), or in nbdev style [models](models.html). '
            '<img src="benchmarks/results/fig.png" alt="html figure">'),
        _code('#| export\ndef shown(): return 1  # exported, shown'),
        _code('#| echo: false\nSECRET_NO_ECHO = 2', _img_out(_png())),
        _code('#| output: false\nprint(1)', _text_out('SECRET_OUTPUT\n')),
        _code('x = 1 #| hide_line\nplot()', _img_out(_png(4, 4)), _img_out(_png(5, 5))),
        _md('## Section heading -'),
        _md('![a figure](benchmarks/results/fig.png)'))))
    (nbs/'01_models.ipynb').write_text(json.dumps(_nb(_md('# Models'), _md('## The end\n\nBack to [the data](00_data.ipynb).'))))
    (nbs/'benchmarks'/'speed.ipynb').write_text(json.dumps(_nb(_md('# Speed\n\nSee [models](../01_models.ipynb).'))))
    return docs.build(nbs.parent/'_docs', nbs=nbs, api=False), nbs


def test_small_book_directives_outputs_and_links(small_book, browser):
    res, nbs = small_book
    site = res['out']
    assert res['problems'] == []
    assert [(pg.url, pg.title, pg.section) for pg in res['pages']] == [
        ('index.html', 'A small book', ''), ('data.html', 'Data: photos in', 'Chapters'),
        ('models.html', 'Models', 'Chapters'), ('benchmarks/speed.html', 'Speed', 'Benchmarks')]
    data = next(pg for pg in res['pages'] if pg.url == 'data.html')
    assert docs.expected_images(data) == 5                   # 3 PNG outputs (one of a cell without its code), 2 in markdown
    v = visit(browser, site, 'data.html')
    assert v['title'] == 'Data: photos in - RecycleNet'
    loaded = [w for _, w in v['article_imgs'] if w > 0]
    assert len(loaded) == 5 and sorted(loaded) == [4, 5, 8, 20, 20], v['article_imgs']
    text = browser.find_element('css selector', 'article').text
    assert 'def shown()' in text and 'plot()' in text
    for hidden in ('SECRET_HIDDEN_CELL', 'SECRET_NO_ECHO', 'SECRET_OUTPUT', 'x = 1', '#|', 'Section heading'):
        assert hidden not in text, f'data.html shows {hidden!r}'
    hrefs = {raw for raw, _ in v['links']}
    assert {'models.html#the-end', 'models.html'} <= hrefs       # (Jupyter's anchor, as the page's id)
    assert '../models.html' in {raw for raw, _ in visit(browser, site, 'benchmarks/speed.html')['links']}
    assert check_links(site) == []
