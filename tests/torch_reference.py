"""Reference PyTorch models for the conversion tests: the source library's own module with random
weights and random batch-norm statistics, its state dict, random clips and its logits on them.

  python -m tests.torch_reference OUT_DIR SOURCE MODEL T,H,W [T,H,W ...]

Writes OUT_DIR/state.pth, OUT_DIR/clip_{i}.npy (`[1, T, H, W, 3]`, channels last as our models
take them) and OUT_DIR/logits_{i}.npy, and prints the parameter count as JSON. Runs in a process
of its own without TensorFlow: importing torchvision after TensorFlow crashes the process.
"""

import json
import pathlib
import sys

import numpy as np
import torch


def build(source, model, clip):
    """The source's module. PyTorchVideo's CSN is built as its hub's `csn_r101` (stem max pool),
    with a head pool covering the whole last feature map of `clip` (the hub's (4, 7, 7) is that
    map for 32x224x224 clips)."""
    if source == "torchvision":
        import torchvision.models.video as video
        return getattr(video, model)()
    from pytorchvideo.models.csn import create_csn
    frames, height, width = clip
    return create_csn(model_depth=int(model.removeprefix("csn_r")), stem_pool=torch.nn.MaxPool3d,
                      head_pool_kernel_size=(max(frames // 8, 1), -(-height // 32), -(-width // 32)))


def randomise_batch_norm(module, generator):
    """Batch norms with a random scale, offset and running statistics (an initialised module has
    1, 0, 0 and 1, which would hide a mismatch)."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            size = layer.num_features
            layer.weight.data = torch.rand(size, generator=generator) + 0.5
            layer.bias.data = torch.randn(size, generator=generator) * 0.1
            layer.running_mean = torch.randn(size, generator=generator) * 0.1
            layer.running_var = torch.rand(size, generator=generator) * 0.5 + 0.75


def main(out_dir, source, model, *clips):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    shapes = [tuple(int(n) for n in clip.split(",")) for clip in clips]
    module = build(source, model, shapes[0])
    randomise_batch_norm(module, generator)
    module.eval()
    torch.save(module.state_dict(), out_dir / "state.pth")
    for index, shape in enumerate(shapes):
        clip = torch.rand((1, 3, *shape), generator=generator) * 2 - 1  # [N, C, T, H, W]
        with torch.inference_mode():
            logits = module(clip)
        np.save(out_dir / f"clip_{index}.npy", clip.permute(0, 2, 3, 4, 1).numpy())
        np.save(out_dir / f"logits_{index}.npy", logits.numpy())
    print(json.dumps({"parameters": sum(p.numel() for p in module.parameters())}))


if __name__ == "__main__":
    main(*sys.argv[1:])
