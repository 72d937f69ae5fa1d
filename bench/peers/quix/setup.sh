#!/usr/bin/env bash
# Setup for the Quix Streams peer of `make bench` (see bench/peers/CONTRACT.md): its venv
# .local/bench/quix/venv with the versions pinned in requirements.txt.
source "$(dirname "$0")/../setup-lib.sh"
peer_init quix requirements.txt
peer_is_ready '[ -x "$peer_python" ]'
peer_venv quixstreams
peer_done
