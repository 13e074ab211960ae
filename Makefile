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

.PHONY: demo test sysdeps venv clean

$(BIN)/duskwatch: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[export,test]"
	@touch $@

venv: $(BIN)/duskwatch

sysdeps:
	@missing=$$(for p in $(SYS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages: $$missing"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

demo: venv
	$(BIN)/duskwatch demo

test: sysdeps venv
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
