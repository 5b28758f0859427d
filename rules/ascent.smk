# Gradient ascent (seed rows 4 to 7): class model visualisation and filter
# visualisation (no images involved), and deep dream without and with octaves
# (one job per model, layer, filter and chunk of images).

CLASS_VIZ = technique("class_viz")

if CLASS_VIZ:
    for _model in CLASS_VIZ["models"]:
        _rows = []
        for _class in CLASS_VIZ["classes"]:
            _cells = []
            for _reg in CLASS_VIZ["regularizations"]:
                _png = f"{RESULTS}/{_model}/class-viz/class{_class}-{_reg}.png"
                TARGETS.append(_png)
                if CLASS_VIZ["raw"]:
                    TARGETS.append(f"{RESULTS}/{_model}/class-viz/class{_class}-{_reg}.npy")
                _cells.append((_reg, [_model, REGULARIZATION_LABELS[_reg]], _png))
            _rows.append((str(_class), f"class {_class}", _cells))
        grid_table("class-viz", _model, _rows)

    rule class_viz:
        """One job per model and regularization; the classes are optimised together."""
        input:
            weights=weights_input,
        output:
            class_viz_outputs(),
        log:
            f"{RESULTS}/logs/{{model}}/class-viz/{{regularization}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/{{model}}/class-viz/{{regularization}}.tsv"
        wildcard_constraints:
            model=one_of(CLASS_VIZ["models"]),
            regularization=one_of(CLASS_VIZ["regularizations"]),
        threads: THREADS
        resources:
            gpu=GPU,
        params:
            device=DEVICE,
            command="class-viz",
            args=class_viz_args,
        shell:
            COMPUTE


FILTER_VIZ = technique("filter_viz")

if FILTER_VIZ:
    for _model, _settings in FILTER_VIZ["models"].items():
        _cells = []
        for _pair in _settings["filters"]:
            _png = f"{RESULTS}/{_model}/filter-viz/{_pair['layer']}-filter{_pair['filter']}.png"
            TARGETS.append(_png)
            if FILTER_VIZ["raw"]:
                TARGETS.append(f"{RESULTS}/{_model}/filter-viz/{_pair['layer']}-filter{_pair['filter']}.npy")
            _cells.append((f"{_pair['layer']}-{_pair['filter']}",
                           [_model, f"layer {_pair['layer']}", f"filter {_pair['filter']}"], _png))
        grid_table("filter-viz", _model, [("filters", _model, _cells)])

    rule filter_viz:
        """One job per model, layer and filter."""
        input:
            weights=weights_input,
        output:
            filter_viz_outputs(),
        log:
            f"{RESULTS}/logs/{{model}}/filter-viz/{{layer}}-filter{{filter}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/{{model}}/filter-viz/{{layer}}-filter{{filter}}.tsv"
        wildcard_constraints:
            model=one_of(FILTER_VIZ["models"]),
            layer=one_of({p["layer"] for m in FILTER_VIZ["models"].values() for p in m["filters"]}),
            filter=r"\d+",
        threads: THREADS
        resources:
            gpu=GPU,
        params:
            device=DEVICE,
            command="filter-viz",
            args=filter_viz_args,
        shell:
            COMPUTE


# Deep dream, plain (seed row 6) and with octaves (seed row 7): one job per model,
# layer, filter and chunk of images for both (rules/per_image.smk makes the rules).
for _key in ("deep_dream", "deep_dream_octaves"):
    _dream = technique(_key)
    if not _dream:
        continue
    _folder = TECHNIQUES[_key]

    for _model, _settings in _dream["models"].items():
        _tokens = [filter_token(value) for value in _settings["filters"]]
        per_image_table(_folder, _model, [
            (f"{layer}-{token}", [_model, f"layer {layer}", filter_label(token)], per_image_stem(_key, _model, f"{layer}-{token}", "{image}") + ".png")
            for layer in _settings["layers"] for token in _tokens
        ])

        for _layer in _settings["layers"]:
            for _token in _tokens:
                per_image_job(_key, _model, f"{_layer}-{_token}", "deep-dream",
                              functools.partial(deep_dream_job, _key, _model, _layer, _token))
