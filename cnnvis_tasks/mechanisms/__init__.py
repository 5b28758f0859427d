"""The tensor machinery techniques are built from (imports torch).

* :mod:`.capture`: record layer outputs during a forward pass, stopping early;
* :mod:`.relu_rules`: input gradients with a backward rule at every ReLU
  (vanilla, guided backpropagation, deconvnet);
* :mod:`.cam`: class activation maps from one layer, weighted per channel;
* :mod:`.ascent`: gradient ascent on images (class and filter visualisation,
  deep dream), with :mod:`.parameterization` for the optimised image;
* :mod:`.targets`: the class each image is explained for;
* :mod:`.kernels`: convolution weights by layer or parameter index.

Each function takes an ``nn.Module`` in eval mode and tensors in the model's
input space, so that tests can drive it with tiny hand-built networks; the
techniques (:mod:`cnnvis_tasks.techniques`) adapt them to loaded models and
pixel images.
"""
