# Feature maps (seed row 1): one job per model, layer and chunk of images; each
# job loads the model once and runs its images through it in batches.

FEATURE_MAPS = technique("feature_maps")

if FEATURE_MAPS:
    for _model, _settings in FEATURE_MAPS["models"].items():
        per_image_table("feature-maps", _model, [
            (layer, [_model, f"layer {layer}"], f"{RESULTS}/{_model}/feature-maps/{{image}}/{layer}.png")
            for layer in _settings["layers"]
        ])

        for _layer in _settings["layers"]:
            for _chunk, _names in CHUNKS.items():
                _name = chunk_rule_name("feature_maps", _model, _layer, _chunk)
                _args, _outputs = feature_maps_job(_model, _layer, _names)

                rule:
                    name:
                        _name
                    input:
                        images=[IMAGES[name] for name in _names],
                        weights=weights_of(_model),
                    output:
                        _outputs,
                    log:
                        f"{RESULTS}/logs/{_model}/feature-maps/{_layer}/{_chunk}.log",
                    benchmark:
                        f"{RESULTS}/benchmarks/{_model}/feature-maps/{_layer}/{_chunk}.tsv"
                    threads: THREADS
                    resources:
                        gpu=GPU,
                    params:
                        device=DEVICE,
                        command="feature-maps",
                        args=_args,
                    shell:
                        COMPUTE

                add_targets(_outputs)
