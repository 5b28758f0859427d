# Saliency maps (seed row 3): one job per model, method and chunk of images, writing
# every rendering (colour, gray) and optionally the raw gradient.

SALIENCY = technique("saliency")

if SALIENCY:
    for _model in SALIENCY["models"]:
        _columns = []
        for _method in SALIENCY["methods"]:
            for _rendering in SALIENCY["renderings"]:
                _png = f"{RESULTS}/{_model}/saliency/{{image}}/{_method}-{_rendering}.png"
                ALL_TARGETS.extend(per_image_targets(_png))
                _columns.append((f"{_method}-{_rendering}", [_model, _method, _rendering], _png))
            if SALIENCY["raw"]:
                ALL_TARGETS.extend(per_image_targets(f"{RESULTS}/{_model}/saliency/{{image}}/{_method}.npy"))
        per_image_table("saliency", _model, _columns)

    for _chunk, _names in CHUNKS.items():

        rule:
            name:
                f"saliency_{_chunk}"
            input:
                images=[IMAGES[name] for name in _names],
                weights=weights_input,
            output:
                saliency_outputs(_names),
            log:
                f"{RESULTS}/logs/{{model}}/saliency/{{method}}/{_chunk}.log",
            benchmark:
                f"{RESULTS}/benchmarks/{{model}}/saliency/{{method}}/{_chunk}.tsv"
            wildcard_constraints:
                model=one_of(SALIENCY["models"]),
                method=one_of(SALIENCY["methods"]),
            threads: THREADS
            resources:
                gpu=GPU,
            params:
                device=DEVICE,
                command="saliency",
                args=saliency_args(_names),
            shell:
                COMPUTE
