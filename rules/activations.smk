# Feature maps (seed row 1): one job per model, layer and chunk of images
# (rules/per_image.smk makes the rules).

FEATURE_MAPS = technique("feature_maps")

if FEATURE_MAPS:
    for _model, _settings in FEATURE_MAPS["models"].items():
        per_image_table("feature-maps", _model, [
            (layer, [_model, f"layer {layer}"], per_image_stem("feature_maps", _model, layer, "{image}") + ".png")
            for layer in _settings["layers"]
        ])
        for _layer in _settings["layers"]:
            per_image_job("feature_maps", _model, _layer, "feature-maps",
                          functools.partial(feature_maps_job, _model, _layer))
