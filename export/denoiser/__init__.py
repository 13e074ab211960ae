"""The low-light denoiser: a residual-shift diffusion model (teacher), its few-step students,
their training, distillation and export. See docs/DENOISER.md."""
