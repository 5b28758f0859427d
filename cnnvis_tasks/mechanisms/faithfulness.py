"""Metrics of attribution maps: do they say what the model does?

Each metric is a function from a model, inputs (N, C, H, W, in the model's input
space), target classes (N,) and maps to numbers per image:

* :func:`deletion_insertion` (Petsiuk et al. 2018): pixels are removed from the
  image (deletion) or put back into a blurred copy (insertion) in order of
  attribution, in a fixed number of steps; the target class probability along the
  way and the area under each curve.  A faithful map has a low deletion area and a
  high insertion area.
* :func:`road` and :func:`road_combined` (Rong et al. 2022, "ROAD"): a share of the
  most (or least) relevant pixels is replaced by noisy linear imputation from their
  neighbours; the change in the target score.
* :func:`randomisation` (Adebayo et al. 2018): the Spearman rank correlation between
  the maps of the trained model and those of copies whose layers are re-initialised
  in cascade from the head down.  A map that depends on what the model learned
  decorrelates.
* :func:`faithfulness_correlation` (Bhatt et al. 2020): the correlation between the
  attribution of random sets of input values and the fall of the score when they are
  removed.
* :func:`sensitivity` (Yeh et al. 2019): how far the map moves under small input noise
  (max- and average-sensitivity).
* :func:`localisation`, :func:`pointing_game`, :func:`rank_accuracy`: the share of
  positive attribution inside a bounding box; whether the map's peak, and its
  highest-ranked pixels, lie on the object.

Every model input goes through in chunks of at most ``batch_size`` copies under
``torch.inference_mode()`` (:func:`.attribution.copy_chunks`).  ROAD's imputation
is CPU work (a sparse linear system per copy, scipy).

The metrics live in :mod:`.perturbation_curves`, :mod:`.road`,
:mod:`.faithfulness_correlation`, :mod:`.model_randomisation`, :mod:`.robustness` and
:mod:`.localisation`, what they share (maps at the
input size, pixel order, target scores) in :mod:`.metric_maps`; this module gathers
the metrics and :func:`as_pixel_map` under one name.
"""

from cnnvis_tasks.mechanisms.faithfulness_correlation import faithfulness_correlation
from cnnvis_tasks.mechanisms.localisation import localisation, pointing_game, rank_accuracy
from cnnvis_tasks.mechanisms.metric_maps import as_pixel_map
from cnnvis_tasks.mechanisms.model_randomisation import cascade_stages, randomisation
from cnnvis_tasks.mechanisms.perturbation_curves import deletion_insertion
from cnnvis_tasks.mechanisms.road import road, road_combined
from cnnvis_tasks.mechanisms.robustness import sensitivity

__all__ = [
    "as_pixel_map",
    "cascade_stages",
    "deletion_insertion",
    "faithfulness_correlation",
    "localisation",
    "pointing_game",
    "randomisation",
    "rank_accuracy",
    "road",
    "road_combined",
    "sensitivity",
]
