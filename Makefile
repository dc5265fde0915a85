# earshot's two commands, both idempotent and quick once set up:
#   make run    set everything up, then start the agent on the shipped defaults
#   make test   set everything up, then run the linters and the whole test suite
# Set-up installs the Debian packages the machine lacks (as root with apt-get; otherwise it prints
# the exact command), then a virtual environment in .venv with earshot installed in it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# libportaudio2: microphone capture (sounddevice); libsndfile1: audio files (soundfile);
# mesa-vulkan-drivers + libvulkan1: a Vulkan adapter (lavapipe) where no GPU exists;
# pulseaudio, pulseaudio-utils, libasound2-plugins: the virtual microphone of the capture tests;
# espeak-ng, flite, festival + voices, sox: local speech synthesis for training data.
DEB_PACKAGES := libportaudio2 libsndfile1 mesa-vulkan-drivers libvulkan1 \
	pulseaudio pulseaudio-utils libasound2-plugins \
	espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox

.PHONY: run test fleet-demo setup system-packages

run: setup
	$(BIN)/earshot run

# A coordinator and three devices on this machine, federating the first wake word (README).
fleet-demo: setup
	$(BIN)/earshot fleet demo

test: setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

setup: system-packages $(STAMP)

system-packages:
	@if ! command -v dpkg-query >/dev/null; then \
		echo "not a Debian system: install PortAudio, libsndfile, a Vulkan driver, PulseAudio, espeak-ng, flite, festival and sox yourself"; \
		exit 0; \
	fi; \
	missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
		echo "earshot needs Debian packages this machine lacks; run:"; \
		echo "  sudo apt-get install -y --no-install-recommends" $$missing; \
		exit 1; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "earshot needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench,fleet]'
	touch $@
