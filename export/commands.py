"""Subcommands contributed by the export package: ``duskwatch export yolo|denoiser|triton|openvino-int8``,
``duskwatch train denoiser``, ``duskwatch distill denoiser``, ``duskwatch degrade``.

A table (group -> {leaf -> module}) read by the command line through the ``duskwatch.commands``
entry point, so this package never imports the daemon. Each module imports torch and
ultralytics only inside ``run``.
"""

COMMANDS = {
    "export": {"yolo": "export.cmd_export_yolo", "denoiser": "export.cmd_export_denoiser",
               "triton": "export.cmd_export_triton",
               "openvino-int8": "export.cmd_export_openvino_int8"},
    "train": {"denoiser": "export.cmd_train_denoiser"},
    "distill": {"denoiser": "export.cmd_distill_denoiser"},
    "degrade": "export.cmd_degrade",
}
