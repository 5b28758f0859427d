# Saliency maps (seed row 3): one job per model, method and chunk of images, writing
# every rendering (colour, gray) and optionally the raw gradient.

SALIENCY = technique("saliency")

if SALIENCY:
    for _model in SALIENCY["models"]:
        per_image_table("saliency", _model, [
            (f"{method}-{rendering}", [_model, method, rendering], f"{RESULTS}/{_model}/saliency/{{image}}/{method}-{rendering}.png")
            for method in SALIENCY["methods"] for rendering in SALIENCY["renderings"]
        ])

        for _method in SALIENCY["methods"]:
            for _chunk, _names in CHUNKS.items():
                _name = chunk_rule_name("saliency", _model, _method, _chunk)
                _args, _outputs = saliency_job(_model, _method, _names)

                rule:
                    name:
                        _name
                    input:
                        images=[IMAGES[name] for name in _names],
                        weights=weights_of(_model),
                    output:
                        _outputs,
                    log:
                        f"{RESULTS}/logs/{_model}/saliency/{_method}/{_chunk}.log",
                    benchmark:
                        f"{RESULTS}/benchmarks/{_model}/saliency/{_method}/{_chunk}.tsv"
                    threads: THREADS
                    resources:
                        gpu=GPU,
                    params:
                        device=DEVICE,
                        command="saliency",
                        args=_args,
                    shell:
                        COMPUTE

                add_targets(_outputs)
