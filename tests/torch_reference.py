"""Reference PyTorch models for the conversion tests: the source library's own module with random
weights and random batch-norm statistics, its state dict, random clips and its logits on them.

  python -m tests.torch_reference OUT_DIR SOURCE MODEL T,H,W [T,H,W ...]
  python -m tests.torch_reference --transforms OUT_DIR MODEL

Writes OUT_DIR/state.pth, OUT_DIR/clip_{i}.npy (`[1, T, H, W, 3]`, channels last as our models
take them) and OUT_DIR/logits_{i}.npy, and prints the parameter count as JSON. With --transforms,
loads torchvision's MODEL from OUT_DIR/state.pth and writes the logits of OUT_DIR/cropped.npy
(uint8 clips `[N, T, H, W, 3]` already resized and cropped, normalised with its weights' mean and
std: `logits_of_cropped.npy`) and of OUT_DIR/raw.npy (uint8 frames `[N, T, H, W, 3]` as stored,
through its weights' own `transforms()`: resize, crop, normalise; `logits_of_raw.npy`). Runs in a
process of its own without TensorFlow: importing torchvision after TensorFlow crashes the process.
"""

import json
import pathlib
import sys

import numpy as np
import torch


def build(source, model, clip):
    """The source's module. PyTorchVideo's CSN is built as its hub's `csn_r101` (stem max pool,
    head pool (4, 7, 7)), the head's window shrunk to the last feature map of a smaller `clip`
    (PyTorch refuses a window larger than the map)."""
    if source == "torchvision":
        import torchvision.models.video as video
        return getattr(video, model)()
    from pytorchvideo.models.csn import create_csn
    frames, height, width = clip
    return create_csn(model_depth=int(model.removeprefix("csn_r")), stem_pool=torch.nn.MaxPool3d,
                      head_pool_kernel_size=(min(4, max(frames // 8, 1)), min(7, -(-height // 32)),
                                             min(7, -(-width // 32))))


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


def transforms(out_dir, model):
    """Logits of torchvision's `model` (weights from OUT_DIR/state.pth) on the clips of
    `cropped.npy` and, through its Kinetics-400 weights' own transforms, of `raw.npy`."""
    import torchvision.models.video as video
    out_dir = pathlib.Path(out_dir)
    weights = {"r3d_18": video.R3D_18_Weights, "s3d": video.S3D_Weights, "mc3_18": video.MC3_18_Weights,
               "r2plus1d_18": video.R2Plus1D_18_Weights}[model].KINETICS400_V1
    module = getattr(video, model)()
    module.load_state_dict(torch.load(out_dir / "state.pth"))
    module.eval()
    preprocess = weights.transforms()
    mean, std = torch.tensor(preprocess.mean)[:, None, None, None], torch.tensor(preprocess.std)[:, None, None, None]
    with torch.inference_mode():
        cropped = torch.from_numpy(np.load(out_dir / "cropped.npy")).permute(0, 4, 1, 2, 3).float() / 255  # [N, C, T, H, W]
        np.save(out_dir / "logits_of_cropped.npy", module((cropped - mean) / std).numpy())
        raw = torch.from_numpy(np.load(out_dir / "raw.npy")).permute(0, 1, 4, 2, 3)  # [N, T, C, H, W] uint8
        np.save(out_dir / "logits_of_raw.npy", module(torch.stack([preprocess(video) for video in raw])).numpy())


if __name__ == "__main__":
    if sys.argv[1] == "--transforms":
        transforms(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
