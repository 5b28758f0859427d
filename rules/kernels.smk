# Kernels (seed row 2): raw convolution weights, no images involved.  One job per
# model and layer (a module path) or parameter (the seed's numbering, 'param<K>').

KERNELS = technique("kernels")

if KERNELS:
    for _model, _settings in KERNELS["models"].items():
        _cells = []
        for _kernel in kernel_names(_settings):
            TARGETS.append(f"{RESULTS}/{_model}/kernels/{_kernel}.png")
            if KERNELS["raw"]:
                TARGETS.append(f"{RESULTS}/{_model}/kernels/{_kernel}.npy")
            _label = f"layer {_kernel}" if _kernel in _settings["layers"] else f"parameter {_kernel.removeprefix('param')}"
            _cells.append((_kernel, [_model, _label], f"{RESULTS}/{_model}/kernels/{_kernel}.png"))
        grid_table("kernels", _model, [("kernels", _model, _cells)])

    rule kernels:
        input:
            weights=weights_input,
        output:
            [report(f"{RESULTS}/{{model}}/kernels/{{kernel}}.png", category="2. Kernels", subcategory="{model}",
                    labels={"kernel": "{kernel}"})]
            + ([f"{RESULTS}/{{model}}/kernels/{{kernel}}.npy"] if KERNELS["raw"] else []),
        log:
            f"{RESULTS}/logs/{{model}}/kernels/{{kernel}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/{{model}}/kernels/{{kernel}}.tsv"
        wildcard_constraints:
            model=one_of(KERNELS["models"]),
            kernel=one_of({k for m in KERNELS["models"].values() for k in kernel_names(m)}),
        threads: 1
        resources:
            gpu=GPU,
        params:
            device=DEVICE,
            command="kernels",
            args=kernels_args,
        shell:
            COMPUTE
