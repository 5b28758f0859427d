"""Visualisation techniques: functions from tensors to tensors.

Each technique takes a model in eval mode and normalised input tensors on the
model's device, and returns tensors.  Rendering to pictures and writing files
live elsewhere (``cnnvis_tasks.render``, ``cnnvis_tasks.outputs``).
"""
