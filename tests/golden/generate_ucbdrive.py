"""Golden fixtures from ucbdrive/dla: the ImageNet classifiers (``dla.py``) and DLA-Up segmentation (``dla_up.py``).

    python tests/golden/generate_ucbdrive.py --ref /tmp/ref/dla [--commit SHA] [--out tests/golden/data]

``--ref`` is a checkout of https://github.com/ucbdrive/dla (never part of this repository).
"""
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from golden import make_input  # noqa: E402
from golden._refgen import (  # noqa: E402
    common_args,
    describe_ida_stages,
    finish,
    hook_output,
    load_synth,
    manifest,
    reference,
    remove,
    roundtrip,
)

TRICKS_NOTE = (
    'DLA-34 "+tricks" files: facebookresearch/omni3d (cubercnn/modeling/backbone/dla.py, dla34(tricks=True), config '
    'MODEL.DLA.TRICKS, default False) and SysCV/dla-afa (afa/model/backbones/dla.py, dla34 always uses it) load '
    'http://dl.yf.io/dla/models/imagenet/dla34+tricks-24a49e58.pth; the plain file is '
    'http://dl.yf.io/dla/models/imagenet/dla34-ba72cf86.pth. Both repositories copy the ucbdrive module tree '
    'unchanged (base_layer.{0,1}, level0, level1, level2..5 as Tree with tree1/tree2/root/project, BasicBlock '
    'conv1/bn1/conv2/bn2, Root conv/bn, fc 1x1 conv 512->1000 with bias) and strict-load the file into it: dla-afa '
    'with load_state_dict(file) on a DLA that has fc, omni3d after `del w["fc.weight"], w["fc.bias"]` on a DLA '
    'without fc. So the +tricks file is a bare state_dict with exactly the key names and shapes of this fixture '
    '(fc.weight [1000,512,1,1], fc.bias [1000] included); only the values differ. (Code reading only; the file '
    'itself was not downloaded. Both load with strict=True, which in torch>=0.4.1 also accepts files without '
    '*.num_batches_tracked.) omni3d checkpoints then store the trunk as backbone.bottom_up.{base_layer,level0..5} '
    '(detectron2 FPN bottom_up, no fc); dla-afa uses dla102x/dla169 etc. with the plain files.'
)

NBT_NOTE = (
    'Keys are model.state_dict() of the reference under torch 2.x, so every BatchNorm has num_batches_tracked '
    '(int64, shape []); files saved with torch < 0.4.1 (most likely ucbdrive\'s 2017/2018 releases) lack those keys: '
    'a converter must accept both.'
)


def classifier(args, dla, arch: str, seed: int) -> None:
    # 64x64 input: level5 is 2x2, so pool_size=2 makes AvgPool2d a global average exactly like 224/7 for ImageNet.
    # pool_size has no parameters; the state_dict is that of dla.<arch>().
    model = getattr(dla, arch)(pool_size=2)
    name = f'ucbdrive_{arch}'
    ref = reference(args, 'dla.py', f'dla.{arch}(pool_size=2)  # return_levels toggled on the same model for levels')
    notes = [
        f'ucbdrive/dla ImageNet classifier {arch}: bare state_dict, no prefix (as dl.yf.io/dla/models/imagenet/'
        f'{arch}-<hash>.pth, loaded by DLA.load_pretrained_model via model_zoo.load_url + load_state_dict).',
        'Forward: base_layer (7x7 conv s1, BN, ReLU) -> level0 (3x3 conv, BN, ReLU; 16ch, s1) -> level1 (3x3 conv s2, '
        'BN, ReLU; 32ch) -> level2..level5 (Tree, stride 2 each). Outputs: level0..level5 as returned with '
        'return_levels=True (strides 1,2,4,8,16,32); logits = fc(avgpool(level5)).flatten(1) (fc is a 1x1 Conv2d '
        'with bias; avgpool here is a global average: AvgPool2d(2) on the 2x2 level5 of the 64x64 input).',
        'Tree: downsample = MaxPool2d(stride) when stride>1, project = Sequential(1x1 conv no bias, BN) when '
        'in!=out (key .project.0/.project.1), residual = project(downsample(x)); levels==1 -> root = Root(cat(x2, x1, '
        '*children)) with conv kxk (k=1) no bias, BN, (+children[0] if root_residual), ReLU; level_root appends '
        'the downsampled input to the children.',
        NBT_NOTE,
    ]
    if arch == 'dla34':
        notes.append(TRICKS_NOTE)
    if arch == 'dla102x':
        notes.append('dla102x: BottleneckX (expansion 2, cardinality 32: conv1 1x1, conv2 3x3 groups=32, conv3 1x1, '
                     'bn1..3), residual_root=True, levels [1,1,1,3,4,1], channels [16,32,128,256,512,1024].')
    man = manifest(name, 'ucbdrive_classifier', ref, seed, model.state_dict(),
                   {'shape': [1, 3, 64, 64], 'seed': seed + 1}, notes=' '.join(notes))
    load_synth(model, man)
    model.eval()

    def run(m):
        x = make_input(man)
        with torch.no_grad():
            m.return_levels = False
            logits = m(x)
            m.return_levels = True
            levels = m(x)
        return {'logits': logits, **{f'level{i}': t for i, t in enumerate(levels)}}

    outputs = run(model)

    def load(path):
        fresh = getattr(dla, arch)(pool_size=2)
        real_zoo = dla.model_zoo
        dla.model_zoo = types.SimpleNamespace(load_url=lambda url: torch.load(path, map_location='cpu',
                                                                               weights_only=True))
        try:
            fresh.load_pretrained_model('imagenet', arch)  # the reference's own loader (URL -> our file)
        finally:
            dla.model_zoo = real_zoo
        fresh.eval()
        return run(fresh)

    roundtrip(man, load, outputs)
    finish(man, outputs, args.out)


def dlaseg(args, dla_up, seed: int) -> None:
    def build():
        return dla_up.DLASeg('dla34', 19, pretrained_base=None, down_ratio=2)

    single = build()
    model = torch.nn.DataParallel(single)  # segment.py trains and saves the DataParallel wrapper
    name = 'ucbdrive_dlaseg_dla34'
    ref = reference(args, 'dla_up.py', "torch.nn.DataParallel(dla_up.DLASeg('dla34', 19, pretrained_base=None, "
                                       'down_ratio=2))  # = dla34up(19), segment.py')
    notes = (
        'ucbdrive/dla DLASeg (dla_up.py) as segment.py saves it: torch.save({"epoch", "arch": "dla34up", '
        '"state_dict": DataParallel(model).state_dict(), "best_prec1"}) -> every key starts with "module."; '
        'segment.py resumes with DataParallel(model).load_state_dict(checkpoint["state_dict"]) (strict). '
        'Submodules: module.base = dla.dla34(return_levels=True) INCLUDING base.fc (1000-way 1x1 conv, unused by '
        'DLASeg.forward), module.dla_up, module.fc (Sequential: 1x1 conv 32->19 with bias, key fc.0), module.up '
        '(ConvTranspose2d(19, 19, 4, stride 2, padding 1, groups 19, bias False), fixed bilinear init, stored). '
        'first_level = log2(down_ratio) = 1: dla_up gets levels[1:] = level1..level5 (channels 32,64,128,256,512, '
        'strides 2..32), scales (1,2,4,8,16). DLAUp has len-1 = 4 IDAUp stages ida_0..ida_3; ida_i has out_dim = '
        'channels[-i-2] and inputs = the last i+2 layers; after each stage layers[-i-1:] = y (the stage outputs). '
        'IDAUp (ucbdrive flavour, CONCAT aggregation): for EVERY input j (including j=0): proj_j = Identity if its '
        'channels == out_dim else Sequential(1x1 conv no bias, BN, ReLU) (keys proj_j.0/.1), up_j = Identity if '
        'factor 1 else ConvTranspose2d(out_dim, out_dim, 2f, stride f, padding f//2, groups out_dim, bias False); '
        'then x = layers[0]; for j>=1: x = node_j(cat([x, layers[j]], 1)) with node_j = Sequential(3x3 conv '
        '2*out_dim->out_dim no bias, BN, ReLU); returns (x, [all node outputs]). DLAUp returns x of the last stage. '
        + describe_ida_stages(single.dla_up) + ' '
        'No extra IDA-Up after '
        'DLAUp. Outputs: features = DLAUp output (32 channels, stride 2 = down_ratio, the tensor fed to fc); logits '
        '= up(fc(features)) at input resolution (forward returns (LogSoftmax(logits), fc(features))). '
        'Input 1x3x64x96 (non-square). ' + NBT_NOTE
    )
    container = {'state_dict_key': 'state_dict', 'extra': {'epoch': 1, 'arch': 'dla34up', 'best_prec1': 0.0}}
    man = manifest(name, 'ucbdrive_dlaseg', ref, seed, model.state_dict(),
                   {'shape': [1, 3, 64, 96], 'seed': seed + 1}, container=container, notes=notes)
    load_synth(model, man)
    model.eval()

    def run(m):
        store = {}
        handles = [hook_output(m.dla_up, store, 'features'), hook_output(m.up, store, 'logits')]
        with torch.no_grad():
            y, x = m(make_input(man))
        remove(handles)
        assert torch.equal(y, torch.log_softmax(store['logits'], 1))
        return {'features': store['features'], 'logits': store['logits']}

    outputs = run(single)

    def load(path):
        fresh = build()
        wrapped = torch.nn.DataParallel(fresh)
        checkpoint = torch.load(path, map_location='cpu', weights_only=True)
        wrapped.load_state_dict(checkpoint['state_dict'])
        fresh.eval()
        return run(fresh)

    roundtrip(man, load, outputs)
    finish(man, outputs, args.out)


def main() -> None:
    args = common_args(__doc__.splitlines()[0], 'ucbdrive/dla').parse_args()
    sys.path.insert(0, os.path.abspath(args.ref))
    import dla  # the reference's modules, from --ref
    import dla_up

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    classifier(args, dla, 'dla34', 1101)
    classifier(args, dla, 'dla102x', 1201)
    dlaseg(args, dla_up, 1301)


if __name__ == '__main__':
    main()
