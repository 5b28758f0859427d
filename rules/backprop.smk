# Saliency maps (seed row 3): one job per model, method and chunk of images, writing
# every rendering (colour, gray) and optionally the raw gradient
# (rules/per_image.smk makes the rules).

SALIENCY = technique("saliency")

if SALIENCY:
    for _model in SALIENCY["models"]:
        per_image_table("saliency", _model, [
            (f"{method}-{rendering}", [_model, method, rendering], per_image_stem("saliency", _model, method, "{image}") + f"-{rendering}.png")
            for method in SALIENCY["methods"] for rendering in SALIENCY["renderings"]
        ])
        for _method in SALIENCY["methods"]:
            per_image_job("saliency", _model, _method, "saliency",
                          functools.partial(saliency_job, _model, _method))
