# Grad-CAM (seed row 8): one job per model, layer ('auto': the command picks the last
# layer with spatial extent and records it) and chunk of images, writing every
# rendering (gray map, heatmap, overlay) and optionally the raw map.

GRAD_CAM = technique("grad_cam")

if GRAD_CAM:
    for _model, _settings in GRAD_CAM["models"].items():
        _columns = []
        for _layer in _settings["layers"]:
            for _rendering in GRAD_CAM["renderings"]:
                _png = f"{RESULTS}/{_model}/grad-cam/{{image}}/{_layer}-{_rendering}.png"
                ALL_TARGETS.extend(per_image_targets(_png))
                _columns.append((f"{_layer}-{_rendering}", [_model, f"layer {_layer}", _rendering], _png))
            if GRAD_CAM["raw"]:
                ALL_TARGETS.extend(per_image_targets(f"{RESULTS}/{_model}/grad-cam/{{image}}/{_layer}.npy"))
        per_image_table("grad-cam", _model, _columns)

    for _chunk, _names in CHUNKS.items():

        rule:
            name:
                f"grad_cam_{_chunk}"
            input:
                images=[IMAGES[name] for name in _names],
                weights=weights_input,
            output:
                grad_cam_outputs(_names),
            log:
                f"{RESULTS}/logs/{{model}}/grad-cam/{{layer}}/{_chunk}.log",
            benchmark:
                f"{RESULTS}/benchmarks/{{model}}/grad-cam/{{layer}}/{_chunk}.tsv"
            wildcard_constraints:
                model=one_of(GRAD_CAM["models"]),
                layer=one_of(layers_of(GRAD_CAM)),
            threads: THREADS
            resources:
                gpu=GPU,
            params:
                device=DEVICE,
                command="grad-cam",
                args=grad_cam_args(_names),
            shell:
                COMPUTE
