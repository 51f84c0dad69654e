"""One training step of torchvision's video networks in PyTorch, for `train.benchmark --peer=torch`.

Import this module (and so PyTorch) before TensorFlow: the other order crashes the process when
torchvision loads (seen with torch 2.14 and TensorFlow 2.21).
"""

import torch
import torchvision.models.video

MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last_3d": torch.channels_last_3d}


def training_step(name, num_classes, clips, labels, memory_format):
    """A function running one SGD step (momentum 0.9, cross-entropy, as `train.benchmark` compiles
    ours) of torchvision's `name` on `clips` (`[batch, time, height, width, 3]` float32 numpy,
    given to PyTorch as `[batch, 3, time, height, width]` in `memory_format`, a key of
    MEMORY_FORMATS) and one-hot `labels` `[batch, classes]`; and the network's trainable parameter
    count. The step returns the loss as a float, so the step has finished when it returns."""
    layout = MEMORY_FORMATS[memory_format]
    model = getattr(torchvision.models.video, name)(num_classes=num_classes).train().to(memory_format=layout)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    inputs = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).contiguous(memory_format=layout)
    targets = torch.from_numpy(labels.argmax(-1))
    loss_function = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = loss_function(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
