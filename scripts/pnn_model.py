#!/usr/bin/python3
"""Open a model pnn trained in PyTorch, and test it.

pnn writes its models as LibTorch archives: model.pt (hogwild, sgd) holds the
parameters and buffers; a job's checkpoint (epoch_<n>.pt, latest.pt) holds them under
"model", beside the optimizer's state. PyTorch opens both with torch.jit.load. This
file defines pnn's networks in PyTorch with pnn's parameter names, so that the
tensors load with load_state_dict:

    import pnn_model                                   # this file (scripts/)
    net = pnn_model.load("runs/hw/model.pt", "lenet5")  # a torch.nn.Module, in eval mode
    logits = net(pnn_model.mnist_batch(images_uint8))   # Nx1x28x28 uint8 -> Nx10

or from the shell, the test set's accuracy and loss as JSON:

    python3 scripts/pnn_model.py runs/hw/model.pt --model lenet5 --dataset fashion-mnist

Needs Debian's python3-torch (PyTorch 1.13, as pnn's LibTorch) and python3-numpy.
"""

import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class LeNet(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class LeNet5(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))
        x = F.relu(F.max_pool2d(self.bn2(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


class AlexNet(nn.Module):
    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=5), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(2))
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


VGG_LAYERS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    def __init__(self, depth, in_channels, num_classes):
        super().__init__()
        layers, width = [], in_channels
        for c in VGG_LAYERS[depth]:
            if c == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(width, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(True)]
                width = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class SeparableBlock(nn.Module):
    def __init__(self, width, out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=width, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class MobileNet(nn.Module):
    BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks, width = [], 32
        for out, stride in self.BLOCKS:
            blocks.append(SeparableBlock(width, out, stride))
            width = out
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS = {
    "lenet": LeNet,
    "lenet5": LeNet5,
    "alexnet": AlexNet,
    "mobilenet": MobileNet,
    "vgg11": lambda c, k: VGG(11, c, k),
    "vgg13": lambda c, k: VGG(13, c, k),
    "vgg16": lambda c, k: VGG(16, c, k),
    "vgg19": lambda c, k: VGG(19, c, k),
}


def load(path, model, in_channels=1, num_classes=10):
    """The network `model` (pnn-node models) with the tensors of pnn's file `path`."""
    if model not in MODELS:
        raise ValueError(f"--model {model}: expected one of {', '.join(MODELS)}")
    try:
        archive = torch.jit.load(path, map_location="cpu")
    except RuntimeError as e:
        raise ValueError(f"{path}: not a LibTorch archive ({str(e).splitlines()[0]})") from e
    children = dict(archive.named_children())
    if "model" in children:  # a job's checkpoint: the network beside the optimizer
        archive = children["model"]
    state = {name: t for name, t in archive.named_parameters()}
    state.update({name: t for name, t in archive.named_buffers()})
    net = MODELS[model](in_channels, num_classes)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        first = (f"no {missing[0]}" if missing else f"an unknown {unexpected[0]}" if unexpected
                 else f"{wrong[0]} of shape {list(state[wrong[0]].shape)}, expected "
                      f"{list(expected[wrong[0]].shape)}")
        raise ValueError(f"{path}: not a {model} with {in_channels} channel(s) and "
                         f"{num_classes} classes: {first}")
    net.load_state_dict(state, strict=True)
    return net.eval()


NORMALISATION = {"fashion-mnist": (0.2860, 0.3530), "mnist": (0.1307, 0.3081)}


def mnist_batch(images, dataset="fashion-mnist"):
    """pnn's evaluation transform of uint8 Nx1x28x28 images: bilinear resize to 32x32 on
    0..255 values, then to [0, 1], then the dataset's mean and std."""
    mean, std = NORMALISATION[dataset]
    x = torch.as_tensor(images).float()
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return (x / 255.0 - mean) / std


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape).copy()


def test_set(dataset, data_dir):
    def find(base):
        for name in (base, base + ".gz"):
            if os.path.exists(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        raise FileNotFoundError(f"--data-dir {data_dir}: no {base}[.gz]")
    images = read_idx(find("t10k-images-idx3-ubyte"))
    labels = read_idx(find("t10k-labels-idx1-ubyte"))
    return images.reshape(-1, 1, 28, 28), torch.as_tensor(labels.astype(np.int64))


def evaluate(net, images, labels, dataset, batch_size=256):
    correct, loss = 0, 0.0
    with torch.no_grad():
        for at in range(0, len(labels), batch_size):
            logits = net(mnist_batch(images[at:at + batch_size], dataset))
            y = labels[at:at + batch_size]
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    return {"accuracy": correct / len(labels), "loss": loss / len(labels),
            "correct": correct, "samples": len(labels)}


def main():
    parser = argparse.ArgumentParser(description="Test a model pnn trained, in PyTorch.")
    parser.add_argument("file", help="model.pt, or a job's epoch_<n>.pt / latest.pt")
    parser.add_argument("--model", required=True, help="its network: " + ", ".join(MODELS))
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(NORMALISATION))
    parser.add_argument("--data-dir", default=None,
                        help="folder of the idx files (default: Debian's Fashion-MNIST)")
    a = parser.parse_args()
    data_dir = a.data_dir or ("/usr/share/datasets/fashion-mnist"
                              if a.dataset == "fashion-mnist" else None)
    if data_dir is None:
        parser.error("--data-dir: required for mnist (the folder of its idx files)")
    try:
        net = load(a.file, a.model)
        images, labels = test_set(a.dataset, data_dir)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"pnn_model.py: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps(evaluate(net, images, labels, a.dataset)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
