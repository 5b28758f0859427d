# Grad-CAM (seed row 8): one job per model, layer ('auto': the command picks the last
# layer with spatial extent and records it) and chunk of images, writing every
# rendering (gray map, heatmap, overlay) and optionally the raw map
# (rules/per_image.smk makes the rules).

GRAD_CAM = technique("grad_cam")

if GRAD_CAM:
    for _model, _settings in GRAD_CAM["models"].items():
        per_image_table("grad-cam", _model, [
            (f"{layer}-{rendering}", [_model, f"layer {layer}", rendering], per_image_stem("grad_cam", _model, layer, "{image}") + f"-{rendering}.png")
            for layer in _settings["layers"] for rendering in GRAD_CAM["renderings"]
        ])
        for _layer in _settings["layers"]:
            per_image_job("grad_cam", _model, _layer, "grad-cam",
                          functools.partial(grad_cam_job, _model, _layer))
