# Set-up and test entry points. `make demo` and `make test` are the README's two commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torchvision has no CPU-only wheel on PyPI for recent torch; this pair runs on CPU as well.
TORCH_PIN ?= torchvision==0.29.2

SYS_PACKAGES := ffmpeg prometheus python3-gi gir1.2-gst-rtsp-server-1.0 \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav systemd mosquitto \
	chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The Triton server the tests start (tests/triton_server.py): nvidia-pytriton bundles a real
# tritonserver binary that runs on a CPU with its Python backend. PyTriton pins numpy<2, so it
# gets an environment of its own, never the product's .venv.
TRITON_VENV ?= .venv-triton

.PHONY: demo test sysdeps venv triton-env clean

$(BIN)/duskwatch: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[export,test,triton]"
	@touch $@

venv: $(BIN)/duskwatch

$(TRITON_VENV)/.installed: Makefile
	$(PY) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install -q --upgrade pip
	$(TRITON_VENV)/bin/pip install -q "nvidia-pytriton==0.7.0" "onnxruntime>=1.17" "numpy<2"
	@touch $@

triton-env: $(TRITON_VENV)/.installed

sysdeps:
	@missing=$$(for p in $(SYS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

demo: venv
	$(BIN)/duskwatch demo

test: sysdeps venv triton-env
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) $(TRITON_VENV) .pytest_cache
