# Grad-CAM (seed row 8): one job per model, layer ('auto': the command picks the last
# layer with spatial extent and records it) and chunk of images, writing every
# rendering (gray map, heatmap, overlay) and optionally the raw map.

GRAD_CAM = technique("grad_cam")

if GRAD_CAM:
    for _model, _settings in GRAD_CAM["models"].items():
        per_image_table("grad-cam", _model, [
            (f"{layer}-{rendering}", [_model, f"layer {layer}", rendering], f"{RESULTS}/{_model}/grad-cam/{{image}}/{layer}-{rendering}.png")
            for layer in _settings["layers"] for rendering in GRAD_CAM["renderings"]
        ])

        for _layer in _settings["layers"]:
            for _chunk, _names in CHUNKS.items():
                _name = chunk_rule_name("grad_cam", _model, _layer, _chunk)
                _args, _outputs = grad_cam_job(_model, _layer, _names)

                rule:
                    name:
                        _name
                    input:
                        images=[IMAGES[name] for name in _names],
                        weights=weights_of(_model),
                    output:
                        _outputs,
                    log:
                        f"{RESULTS}/logs/{_model}/grad-cam/{_layer}/{_chunk}.log",
                    benchmark:
                        f"{RESULTS}/benchmarks/{_model}/grad-cam/{_layer}/{_chunk}.tsv"
                    threads: THREADS
                    resources:
                        gpu=GPU,
                    params:
                        device=DEVICE,
                        command="grad-cam",
                        args=_args,
                    shell:
                        COMPUTE

                add_targets(_outputs)
