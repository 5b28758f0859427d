# Feature maps (seed row 1): one job per model, layer and chunk of images; each
# job loads the model once and runs its images through it in batches.

FEATURE_MAPS = technique("feature_maps")

if FEATURE_MAPS:
    for _model, _settings in FEATURE_MAPS["models"].items():
        for _layer in _settings["layers"]:
            ALL_TARGETS.extend(per_image_targets(f"{RESULTS}/{_model}/feature-maps/{{image}}/{_layer}.png"))
            if FEATURE_MAPS["raw"]:
                ALL_TARGETS.extend(per_image_targets(f"{RESULTS}/{_model}/feature-maps/{{image}}/{_layer}.npy"))
        per_image_table("feature-maps", _model, [
            (layer, [_model, f"layer {layer}"], f"{RESULTS}/{_model}/feature-maps/{{image}}/{layer}.png")
            for layer in _settings["layers"]
        ])

    for _chunk, _names in CHUNKS.items():

        rule:
            name:
                f"feature_maps_{_chunk}"
            input:
                images=[IMAGES[name] for name in _names],
                weights=weights_input,
            output:
                feature_maps_outputs(_names),
            log:
                f"{RESULTS}/logs/{{model}}/feature-maps/{{layer}}/{_chunk}.log",
            benchmark:
                f"{RESULTS}/benchmarks/{{model}}/feature-maps/{{layer}}/{_chunk}.tsv"
            wildcard_constraints:
                model=one_of(FEATURE_MAPS["models"]),
                layer=one_of(layers_of(FEATURE_MAPS)),
            threads: THREADS
            resources:
                gpu=GPU,
            params:
                device=DEVICE,
                command="feature-maps",
                args=feature_maps_args(_names),
            shell:
                COMPUTE
