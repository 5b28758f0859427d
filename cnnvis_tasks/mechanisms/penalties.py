"""The penalties on the image that class model visualisation knows
(:func:`.ascent.class_visualization`): none, ``l1`` (``lambda * sum |I|``) and ``l2``
(``lambda / 2 * ||I||^2``).

Imports no torch: the class-viz technique offers these as its option's choices, and
the command list and the workflow read every technique's options at each start.
"""

REGULARIZATIONS = ("none", "l1", "l2")
