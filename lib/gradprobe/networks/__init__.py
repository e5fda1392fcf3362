"""The networks of the book, each built from a seeded ``generator``:

- :mod:`gradprobe.networks.layers`  activations, norms, inits, the layer ``Linear -> norm -> activation``
- :mod:`gradprobe.networks.mlp`     fully connected networks: plain, He's basic blocks, Philipp's
  pre-activation ResNet, looks-linear, and the 1/√L residual network of the ghost paper
- :mod:`gradprobe.networks.resnet`  He et al.'s CIFAR ResNets (depth 6n+2, option-A shortcuts)
- :mod:`gradprobe.networks.vgg`     VGG-style conv nets with torchvision's parameter names
- :mod:`gradprobe.networks.vit`     a small Vision Transformer with LayerNorm
- :mod:`gradprobe.networks.swin`    a small Swin Transformer: windowed, shifted attention with LayerNorm
"""
